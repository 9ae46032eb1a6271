"""`data.fetch`: local paths and a local HTTP server; sha256 before extraction; retries that resume by Range."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from action_helpers import Recorder, act, make_ctx

from agent.errors import StepFailed
from agent.pipeline.actions import data

BODY = b"".join(f"line {i}\n".encode() for i in range(20000))


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


class Server:
    """Serves `files` by path; `cut[path]` failures first send only half the body, then drop the connection."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.fail: dict[str, int] = {}
        self.ranges: list[str | None] = []
        self.release = threading.Event()
        """Set to let a `/slow` download (which trickles until then) end."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path
        self.ranges.append(request.headers.get("Range"))
        if self.fail.get(path, 0) > 0:
            self.fail[path] -= 1
            request.send_error(503, "busy")
            return
        if path == "/slow":
            self.trickle(request)
            return
        body = self.files.get(path)
        if body is None:
            request.send_error(404, "no such file")
            return
        start = int(request.headers["Range"].split("=")[1].rstrip("-")) if request.headers.get("Range") else 0
        request.send_response(206 if start else 200)
        request.send_header("Content-Length", str(len(body) - start))
        request.end_headers()
        if self.cut.get(path, 0) > 0:
            self.cut[path] -= 1
            request.wfile.write(body[start:start + (len(body) - start) // 2])
            request.wfile.flush()
            request.close_connection = True
            return
        request.wfile.write(body[start:])

    def trickle(self, request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Length", str(1 << 30))
        request.end_headers()
        while not self.release.wait(0.02):
            try:
                request.wfile.write(b"x" * 65536)
                request.wfile.flush()
            except OSError:
                return

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    served = Server()
    yield served
    served.close()


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "BACKOFF", 0.01)


async def test_http_archive_is_checked_then_extracted(tmp_path: Path, server: Server) -> None:
    archive = tar_bytes({"pack/maps/a.map": b"A", "pack/cfg/game.cfg": b"x=1"})
    server.files["/pack.tar.gz"] = archive
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder)
    out = await act(ctx, "data.fetch", source=f"{server.url}/pack.tar.gz", sha256=hashlib.sha256(archive).hexdigest(),
                    dest="assets", strip_components=1)
    assert out == {"path": str(ctx.data_dir / "assets"), "sha256": hashlib.sha256(archive).hexdigest(), "files": 2}
    assert (ctx.data_dir / "assets" / "maps" / "a.map").read_bytes() == b"A"
    assert not list((ctx.data_dir / data.DOWNLOADS).iterdir())  # the archive is gone once extracted
    assert any("MB" in message for _, message in recorder.progress)


async def test_sha256_mismatch_fails_before_extracting(tmp_path: Path, server: Server) -> None:
    server.files["/pack.tar.gz"] = tar_bytes({"a.txt": b"a"})
    ctx = make_ctx(tmp_path)
    with pytest.raises(StepFailed, match=r"pack\.tar\.gz: sha256 mismatch: expected 0{64}, got [0-9a-f]{64}"):
        await act(ctx, "data.fetch", source=f"{server.url}/pack.tar.gz", sha256="0" * 64)
    assert not (ctx.data_dir / "a.txt").exists()


async def test_a_dropped_download_resumes_by_range(tmp_path: Path, server: Server) -> None:
    server.files["/big.bin"] = BODY
    server.cut["/big.bin"] = 2
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder)
    out = await act(ctx, "data.fetch", source=f"{server.url}/big.bin", sha256=hashlib.sha256(BODY).hexdigest())
    assert (ctx.data_dir / "big.bin").read_bytes() == BODY and out["files"] == 1
    assert server.ranges[0] is None and server.ranges[1] == f"bytes={len(BODY) // 2}-"
    assert len(server.ranges) == 3
    assert sum("trying again" in line for line in recorder.lines()) == 2


async def test_server_errors_are_retried_then_reported(tmp_path: Path, server: Server) -> None:
    server.files["/file.bin"] = b"data"
    server.fail["/file.bin"] = 5
    with pytest.raises(StepFailed, match=r"fetching .*/file.bin failed after 3 tries: HTTP 503"):
        await act(make_ctx(tmp_path), "data.fetch", source=f"{server.url}/file.bin")
    assert len(server.ranges) == 3


async def test_a_missing_file_is_not_retried(tmp_path: Path, server: Server) -> None:
    with pytest.raises(StepFailed, match=r"fetching .*/nope.tar failed: HTTP 404"):
        await act(make_ctx(tmp_path), "data.fetch", source=f"{server.url}/nope.tar")
    assert len(server.ranges) == 1


async def test_local_file_is_copied_and_local_archive_extracted(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    plain = tmp_path / "motd.txt"
    plain.write_text("hello")
    out = await act(ctx, "data.fetch", source=str(plain), dest="etc")
    assert out == {"path": str(ctx.data_dir / "etc" / "motd.txt"), "sha256": hashlib.sha256(b"hello").hexdigest(),
                   "files": 1}
    assert plain.exists()  # a local source is copied, never moved
    archive = tmp_path / "maps.tgz"
    archive.write_bytes(tar_bytes({"m/one.map": b"1", "m/two.map": b"2"}))
    out = await act(ctx, "data.fetch", source=str(archive), extract="auto")
    assert out["files"] == 2 and (ctx.data_dir / "m" / "two.map").read_bytes() == b"2" and archive.exists()


async def test_local_directory_is_copied(tmp_path: Path) -> None:
    source = tmp_path / "tree"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "x").write_text("x")
    ctx = make_ctx(tmp_path)
    out = await act(ctx, "data.fetch", source=str(source), dest="copy")
    assert out["files"] == 1 and (ctx.data_dir / "copy" / "sub" / "x").read_text() == "x"


async def test_missing_source_and_escaping_dest_fail(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    with pytest.raises(StepFailed, match="does not exist on this node"):
        await act(ctx, "data.fetch", source=str(tmp_path / "nope.tar"))
    with pytest.raises(StepFailed, match="leads out of the instance's data dir"):
        await act(ctx, "data.fetch", source=str(tmp_path), dest="../elsewhere")


async def test_cancel_stops_the_download_and_keeps_the_part_for_resuming(tmp_path: Path, server: Server) -> None:
    recorder = Recorder()
    ctx = make_ctx(tmp_path, recorder)
    task = asyncio.ensure_future(act(ctx, "data.fetch", source=f"{server.url}/slow"))
    for _ in range(500):
        if any(percent > 0 for percent, _ in recorder.progress):
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    part = ctx.data_dir / data.DOWNLOADS / "slow.part"
    assert part.stat().st_size > 0
