"""The Docker adapter's pure helpers: pull progress, log frames, timestamps, references."""

from __future__ import annotations

import io
import struct
from datetime import UTC, datetime

import pytest

from agent.pipeline.actions.image import normalize_ref
from agent.runtime._convert import PullTally, info_from_event, parse_time, read_frames, split_lines


def test_pull_tally_sums_layers_and_picks_new_status_lines() -> None:
    tally = PullTally()
    events = [
        {"status": "Pulling from game/tiny", "id": "1"},
        {"status": "Pulling fs layer", "id": "aaa"},
        {"status": "Pulling fs layer", "id": "bbb"},
        {"status": "Downloading", "id": "aaa", "progressDetail": {"current": 500_000, "total": 2_000_000}},
        {"status": "Downloading", "id": "bbb", "progressDetail": {"current": 1_000_000, "total": 2_000_000}},
        {"status": "Downloading", "id": "aaa", "progressDetail": {"current": 1_000_000, "total": 2_000_000}},
    ]
    lines = [tally.feed(event) for event in events]
    assert lines == ["1: Pulling from game/tiny", "aaa: Pulling fs layer", "bbb: Pulling fs layer",
                     "aaa: Downloading", "bbb: Downloading", None]
    assert (tally.done, tally.total, tally.percent) == (2_000_000, 4_000_000, 50.0)
    assert tally.describe() == "2.0 MB / 4.0 MB"
    tally.feed({"status": "Extracting", "id": "aaa", "progressDetail": {"current": 2_000_000, "total": 2_000_000}})
    assert tally.done == 2_000_000  # extraction is not downloaded bytes
    tally.feed({"status": "Pull complete", "id": "aaa"})
    tally.feed({"status": "Download complete", "id": "bbb"})
    tally.feed({"status": "Digest: sha256:abc"})
    assert tally.done == tally.total == 4_000_000 and tally.digest == "sha256:abc"


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def test_log_frames_become_lines_per_stream() -> None:
    raw = io.BytesIO(frame(1, b"hel") + frame(2, b"oops\n") + frame(1, b"lo\r\nwor") + frame(1, b"ld\nlast"))
    assert list(split_lines(read_frames(raw.read, tty=False))) == [
        ("stderr", "oops"), ("stdout", "hello"), ("stdout", "world"), ("stdout", "last")]
    assert list(split_lines(read_frames(io.BytesIO(b"a\nb").read, tty=True))) == [("stdout", "a"), ("stdout", "b")]


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T12:00:00.123456789Z", datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)),
    ("2024-05-01T12:00:00Z", datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)),
    ("0001-01-01T00:00:00Z", None), ("", None), (None, None), ("garbage", None),
])
def test_parse_time(text: str | None, expected: datetime | None) -> None:
    assert parse_time(text) == expected


def test_info_from_a_destroy_event() -> None:
    info = info_from_event({"Action": "destroy", "Actor": {"ID": "abc", "Attributes": {
        "name": "gn-i1", "image": "game:1", "gamenode.instance": "i1", "gamenode.run": "r1"}}})
    assert (info.id, info.name, info.instance_id, info.run_id, info.state) == ("abc", "gn-i1", "i1", "r1", "removed")


@pytest.mark.parametrize(("image", "ref"), [
    ("game", "game:latest"), ("reg:5000/game", "reg:5000/game:latest"), ("reg:5000/game:2", "reg:5000/game:2"),
    ("game@sha256:abc", "game@sha256:abc"),
])
def test_normalize_ref(image: str, ref: str) -> None:
    assert normalize_ref(image) == ref
