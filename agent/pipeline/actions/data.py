"""`data.fetch`: a game's data from an http(s) URL or a local path into the instance's data dir.

Downloads resume by `Range` into a `.part` file and are retried (3 tries,
backoff) inside the action; the sha256, when given, is checked before
anything is extracted. Archives (tar, zip) are extracted safely (see
`_archive`); anything else is copied as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from agent.errors import StepFailed
from agent.pipeline.actions._archive import archive_kind, extract
from agent.pipeline.actions._util import LoopCallbacks, in_thread
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import DataFetch

__all__ = ["ATTEMPTS", "fetch", "sha256_of"]

ATTEMPTS = 3
"""Download tries inside one step attempt."""
BACKOFF = 0.5
"""Seconds before the second try (doubled for each next one)."""
READ_TIMEOUT = 30.0
DOWNLOADS = ".downloads"
"""Where downloads land, under the data dir (removed once extracted)."""
_CHUNK = 1 << 16
_PERMANENT_HTTP = frozenset(range(400, 500)) - {408, 425, 429}

Report = Callable[[int, int], None]
"""(bytes so far, total bytes or 0 when unknown)."""


async def fetch(ctx: StepContext, inputs: DataFetch) -> dict[str, Any]:
    """Fetch, check and extract: {path, sha256, files}."""
    dest = ctx.inside(inputs.dest, "dest") if inputs.dest else ctx.data_dir
    out = LoopCallbacks(ctx)
    name = _file_name(inputs.source)
    report = _reporter(out, name)
    if _is_url(inputs.source):
        local = await _download_with_retries(ctx, inputs.source, ctx.data_dir / DOWNLOADS / name, report)
        downloaded = True
    else:
        local = ctx.path(inputs.source, "source")
        downloaded = False
        if not local.exists():
            raise StepFailed(f"data source {inputs.source} does not exist on this node")
    try:
        return await _place(ctx, inputs, local, dest, out)
    finally:
        if downloaded and archive_kind(name, inputs.extract) != "none":
            with contextlib.suppress(OSError):
                local.unlink()


async def _place(ctx: StepContext, inputs: DataFetch, local: Path, dest: Path, out: LoopCallbacks) -> dict[str, Any]:
    if local.is_dir():
        ctx.progress(50.0, f"copying {local}")
        files = await asyncio.to_thread(_copy_tree, local, dest)
        return {"path": str(dest), "sha256": "", "files": files}
    ctx.progress(90.0, f"checking {local.name}")
    digest = await asyncio.to_thread(sha256_of, local)
    if inputs.sha256 and digest != inputs.sha256.lower():
        if local.parent.name == DOWNLOADS:
            local.unlink(missing_ok=True)  # a retry downloads it again
        raise StepFailed(f"{local.name}: sha256 mismatch: expected {inputs.sha256.lower()}, got {digest}")
    kind = archive_kind(local.name, inputs.extract)
    if kind == "none":
        target = await asyncio.to_thread(_copy_file, local, dest, local.parent.name == DOWNLOADS)
        return {"path": str(target), "sha256": digest, "files": 1}
    ctx.progress(95.0, f"extracting {local.name}")
    files = await in_thread(lambda cancel: extract(local, kind, dest, inputs.strip_components, cancel))
    out.log(f"extracted {files} files from {local.name} into {dest}")
    ctx.progress(100.0, f"extracted {files} files")
    return {"path": str(dest), "sha256": digest, "files": files}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_url(source: str) -> bool:
    return urllib.parse.urlsplit(source).scheme in ("http", "https")


def _file_name(source: str) -> str:
    path = urllib.parse.urlsplit(source).path if _is_url(source) else source
    return Path(urllib.parse.unquote(path)).name or "download"


def _reporter(out: LoopCallbacks, name: str) -> Report:
    def report(done: int, total: int) -> None:
        size = f"{done / 1e6:.1f} MB / {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        out.progress(min(89.0, 89.0 * done / total) if total else 0.0, f"fetching {name}: {size}")

    return report


async def _download_with_retries(ctx: StepContext, url: str, target: Path, report: Report) -> Path:
    shown = ctx.redact(url)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await in_thread(lambda cancel: download(url, target, report, cancel))
            return target
        except StepFailed as exc:
            raise StepFailed(f"fetching {shown} failed: {exc.message}") from exc
        except _Transient as exc:
            if attempt == ATTEMPTS:
                raise StepFailed(f"fetching {shown} failed after {ATTEMPTS} tries: {exc}") from exc
            delay = BACKOFF * 2 ** (attempt - 1)
            ctx.log(f"fetching {shown} failed ({exc}); trying again in {delay:g}s", "warning")
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class _Transient(Exception):
    """A download failure worth another try (connection lost, 5xx, a short body)."""


def download(url: str, target: Path, report: Report, cancel: threading.Event) -> None:
    """Download `url` to `target`, resuming a `target.part` left by an earlier try (blocking)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=READ_TIMEOUT) as response:
            resumed = have > 0 and response.status == 206
            length = int(response.headers.get("Content-Length") or 0)
            done = have if resumed else 0
            total = done + length if length else 0
            with open(part, "ab" if resumed else "wb") as out:
                done = _copy_stream(response, out, done, total, report, cancel)
    except urllib.error.HTTPError as exc:
        _http_failure(exc, part)
    except (urllib.error.URLError, OSError) as exc:
        raise _Transient(_words(exc)) from exc
    if total and done < total:
        raise _Transient(f"the connection closed after {done} of {total} bytes")
    part.replace(target)


def _copy_stream(response: Any, out: Any, done: int, total: int, report: Report, cancel: threading.Event) -> int:
    report(done, total)
    while chunk := response.read(_CHUNK):
        if cancel.is_set():
            raise StepFailed("cancelled")
        out.write(chunk)
        done += len(chunk)
        report(done, total)
    return done


def _http_failure(exc: urllib.error.HTTPError, part: Path) -> NoReturn:
    exc.close()  # it holds the response (and its socket)
    if exc.code == 416:  # the .part is no prefix of what is there now: start over
        part.unlink(missing_ok=True)
        raise _Transient("the server refused to resume (416); starting over") from exc
    reason = f"HTTP {exc.code} {exc.reason}"
    if exc.code in _PERMANENT_HTTP:
        raise StepFailed(reason) from exc
    raise _Transient(reason) from exc


def _words(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc) or type(exc).__name__


def _copy_file(source: Path, dest: Path, move: bool) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / source.name
    if source.resolve() != target.resolve():
        shutil.move(source, target) if move else shutil.copy2(source, target)
    return target


def _copy_tree(source: Path, dest: Path) -> int:
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True)
    return sum(1 for path in dest.rglob("*") if path.is_file())
