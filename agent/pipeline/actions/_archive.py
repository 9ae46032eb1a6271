"""Safe tar and zip extraction: nothing lands outside the destination.

Members with absolute paths or `..` parts, links that point out of the
destination, and writes through a link that leads out are refused (the whole
step fails: an archive that tries is not one to half-trust). Devices and FIFOs
are skipped. `strip_components` drops leading path parts, like GNU tar's.
Ownership is not restored; permission bits are (without setuid/setgid/sticky).
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import threading
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from agent.errors import StepFailed

__all__ = ["archive_kind", "extract"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_CHUNK = 1 << 20


def archive_kind(name: str, extract: str) -> str:
    """"tar", "zip" or "none" for a file name and the step's `extract` choice ("auto" looks at the name)."""
    if extract != "auto":
        return extract
    lower = name.lower()
    if lower.endswith(_TAR_SUFFIXES):
        return "tar"
    return "zip" if lower.endswith(".zip") else "none"


def extract(archive: Path, kind: str, dest: Path, strip: int, cancel: threading.Event | None = None) -> int:
    """Extract `archive` into `dest` (created); the number of regular files written."""
    dest.mkdir(parents=True, exist_ok=True)
    writer = _Writer(dest.resolve(), archive.name, cancel or threading.Event())
    try:
        if kind == "tar":
            with tarfile.open(archive) as tar:
                return writer.tar(tar, strip)
        with zipfile.ZipFile(archive) as zf:
            return writer.zip(zf, strip)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise StepFailed(f"{archive.name} is not a valid {kind} archive: {exc}") from exc


def _stripped(name: str, strip: int, archive: str) -> PurePosixPath | None:
    """The member's path relative to the destination; None when stripped away; StepFailed when unsafe."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise StepFailed(f"{archive}: refusing the absolute path {name!r}")
    if ".." in path.parts:
        raise StepFailed(f"{archive}: refusing the path {name!r}: it climbs out with '..'")
    parts = [part for part in path.parts if part not in ("", ".")]
    if len(parts) <= strip:
        return None
    return PurePosixPath(*parts[strip:])


class _Writer:
    def __init__(self, dest: Path, archive: str, cancel: threading.Event) -> None:
        self.dest = dest
        self.archive = archive
        self.cancel = cancel
        self.files = 0

    def tar(self, tar: tarfile.TarFile, strip: int) -> int:
        for member in tar:
            if self.cancel.is_set():
                raise StepFailed(f"extracting {self.archive} was cancelled")
            relative = _stripped(member.name, strip, self.archive)
            if relative is not None:
                self._tar_member(tar, member, relative, strip)
        return self.files

    def zip(self, zf: zipfile.ZipFile, strip: int) -> int:
        for info in zf.infolist():
            if self.cancel.is_set():
                raise StepFailed(f"extracting {self.archive} was cancelled")
            relative = _stripped(info.filename, strip, self.archive)
            if relative is None:
                continue
            mode = info.external_attr >> 16
            if info.is_dir():
                self._directory(relative)
            elif stat.S_ISLNK(mode):
                self._symlink(relative, zf.read(info).decode("utf-8", "replace"))
            else:
                with zf.open(info) as source:
                    self._file(relative, source, mode & 0o777 or 0o644)
        return self.files

    def _tar_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo, relative: PurePosixPath, strip: int) -> None:
        if member.isdir():
            self._directory(relative, member.mode)
        elif member.issym():
            self._symlink(relative, member.linkname)
        elif member.islnk():
            origin = _stripped(member.linkname, strip, self.archive)
            if origin is None:
                raise StepFailed(f"{self.archive}: the hard link {member.name!r} points at a stripped path")
            self._hardlink(relative, origin)
        elif member.isreg():
            content = tar.extractfile(member)
            if content is None:
                raise StepFailed(f"{self.archive}: cannot read {member.name!r}")
            with content:
                self._file(relative, content, member.mode)
        # devices, FIFOs: skipped

    def _target(self, relative: PurePosixPath) -> Path:
        """Where `relative` goes, after checking that its parent (symlinks resolved) is inside the destination."""
        target = self.dest.joinpath(*relative.parts)
        parent = target.parent.resolve()
        if not parent.is_relative_to(self.dest):
            raise StepFailed(f"{self.archive}: refusing {relative}: it would be written outside the destination")
        return parent / target.name

    def _directory(self, relative: PurePosixPath, mode: int = 0o755) -> None:
        target = self._target(relative)
        if target.is_symlink():
            raise StepFailed(f"{self.archive}: refusing the directory {relative}: a link is in its place")
        target.mkdir(parents=True, exist_ok=True)
        target.chmod((mode & 0o777) | 0o700)

    def _file(self, relative: PurePosixPath, source: IO[bytes], mode: int) -> None:
        target = self._target(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        with open(target, "wb") as out:
            while chunk := source.read(_CHUNK):
                if self.cancel.is_set():
                    raise StepFailed(f"extracting {self.archive} was cancelled")
                out.write(chunk)
        target.chmod((mode & 0o777) | 0o600)
        self.files += 1

    def _symlink(self, relative: PurePosixPath, link: str) -> None:
        target = self._target(relative)
        pointed = PurePosixPath(link)
        resolved = Path(os.path.normpath(target.parent / pointed))
        if pointed.is_absolute() or not resolved.is_relative_to(self.dest):
            raise StepFailed(f"{self.archive}: refusing the link {relative} -> {link}: it leads out of the destination")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        os.symlink(link, target)

    def _hardlink(self, relative: PurePosixPath, source: PurePosixPath) -> None:
        origin = self._target(source)
        if not origin.is_file() or not origin.resolve().is_relative_to(self.dest):
            raise StepFailed(f"{self.archive}: refusing the hard link {relative} -> {source}")
        target = self._target(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, target)
        self.files += 1
