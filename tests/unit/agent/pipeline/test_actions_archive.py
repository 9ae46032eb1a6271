"""Safe extraction: strip_components, and refusal of absolute paths, `..` and links that lead out."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from agent.errors import StepFailed
from agent.pipeline.actions._archive import archive_kind, extract


def make_tar(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None,
             hardlinks: dict[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz" if path.name.endswith("gz") else "w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(content))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for name, target in (hardlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info)
    return path


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.mark.parametrize(("name", "choice", "kind"), [
    ("maps.tar.gz", "auto", "tar"), ("maps.tgz", "auto", "tar"), ("maps.tar.xz", "auto", "tar"),
    ("maps.tar", "auto", "tar"), ("maps.ZIP", "auto", "zip"), ("maps.pak", "auto", "none"), ("maps.pak", "tar", "tar"),
])
def test_archive_kind(name: str, choice: str, kind: str) -> None:
    assert archive_kind(name, choice) == kind


def test_tar_with_strip_components_links_and_modes(tmp_path: Path) -> None:
    files = {"game-1.0/bin/run.sh": b"#!/bin/sh\n", "game-1.0/maps/a.map": b"A", "top.txt": b"stripped away"}
    archive = make_tar(tmp_path / "game.tar.gz", files, links={"game-1.0/current": "maps/a.map"},
                       hardlinks={"game-1.0/maps/b.map": "game-1.0/maps/a.map"})
    dest = tmp_path / "out"
    assert extract(archive, "tar", dest, strip=1) == 3
    assert (dest / "maps" / "a.map").read_bytes() == b"A" and (dest / "maps" / "b.map").read_bytes() == b"A"
    assert os.readlink(dest / "current") == "maps/a.map"
    assert (dest / "bin" / "run.sh").stat().st_mode & 0o111
    assert not (dest / "top.txt").exists()


def test_zip_extracts_with_strip_components(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "game.zip", {"root/a/b.txt": b"b", "root/c.txt": b"c"})
    assert extract(archive, "zip", tmp_path / "out", strip=1) == 2
    assert (tmp_path / "out" / "a" / "b.txt").read_bytes() == b"b"


@pytest.mark.parametrize(("files", "links", "words"), [
    ({"/etc/evil": b"x"}, {}, "absolute path"),
    ({"ok/../../evil": b"x"}, {}, "climbs out"),
    ({}, {"escape": "../../outside"}, "leads out"),
    ({}, {"abs": "/etc/passwd"}, "leads out"),
])
def test_tar_refuses_what_would_land_outside(tmp_path: Path, files: dict[str, bytes], links: dict[str, str],
                                             words: str) -> None:
    archive = make_tar(tmp_path / "bad.tar", files, links)
    with pytest.raises(StepFailed, match=words):
        extract(archive, "tar", tmp_path / "out", strip=0)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


def test_tar_refuses_writing_through_a_link_into_the_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "sneaky").symlink_to(outside)  # left by something else
    archive = make_tar(tmp_path / "bad.tar", {"sneaky/file": b"x"})
    with pytest.raises(StepFailed, match="outside the destination"):
        extract(archive, "tar", dest, strip=0)
    assert not (outside / "file").exists()


def test_zip_refuses_traversal_and_escaping_links(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="climbs out"):
        extract(make_zip(tmp_path / "a.zip", {"../evil": b"x"}), "zip", tmp_path / "out", strip=0)
    with pytest.raises(StepFailed, match="leads out"):
        extract(make_zip(tmp_path / "b.zip", {}, {"link": "../../x"}), "zip", tmp_path / "out", strip=0)


def test_a_broken_archive_is_a_clear_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"not an archive")
    with pytest.raises(StepFailed, match=r"broken\.tar\.gz is not a valid tar archive"):
        extract(broken, "tar", tmp_path / "out", strip=0)
