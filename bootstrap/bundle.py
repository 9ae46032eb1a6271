"""The agent bundle: a prebuilt site-packages for one Python version and arch, as one tar.gz.

Hosts get no pip and need no internet: the hub builds everything once,

1. a wheelhouse of the agent's dependencies only (`AGENT_REQUIREMENTS`, not the
   hub's), downloaded with `pip download --only-binary=:all: --python-version X.Y
   --platform manylinux2014_<arch>`, or the operator's `--wheelhouse DIR` (offline);
2. `pip install --no-index --find-links WHEELHOUSE --target SITE` for that Python
   and platform, plus the agent's own packages (`agent`, `proto`) copied from the
   source tree, plus `gamenode-bundle.json` (version, python, platform);
3. `SITE` packed as a tar.gz; a host extracts it into a venv's site-packages.

Bundles are cached under `cache/` by (version, python, platform, hash of every
input), so a second build is a lookup; wheelhouses by (requirements, python,
platform), so an upgrade (new source) downloads nothing.
"""

from __future__ import annotations

import ast
import compileall
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bootstrap.errors import BootstrapError

__all__ = [
    "AGENT_PACKAGES",
    "AGENT_REQUIREMENTS",
    "META_NAME",
    "REPO_ROOT",
    "Bundle",
    "PipRunner",
    "build_bundle",
    "load_bundle",
    "read_version",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The source tree this package came from (holds `agent/` and `proto/`)."""

AGENT_REQUIREMENTS: tuple[str, ...] = (
    "grpcio>=1.85.1",
    "protobuf>=7.35.1,<8",
    "psutil>=5.9",
    "docker>=7.0",
    "nvidia-ml-py>=12.535",
    "PyYAML>=6.0.1",
    "pydantic>=2.7,<3",
    "cryptography>=42",
)
"""What the agent imports on a node (their own dependencies follow); the one list the bundle is built from."""

AGENT_PACKAGES: tuple[str, ...] = ("agent", "proto")
"""The gamenode packages a node runs (`console` and `bootstrap` stay on the hub)."""

META_NAME = "gamenode-bundle.json"

PipRunner = Callable[[Sequence[str]], None]
"""Runs `python -m pip ARGS...`; raises `BootstrapError` when pip fails. A seam for tests."""

_ARCHES = ("x86_64", "aarch64")


@dataclass(frozen=True, slots=True)
class Bundle:
    """A built bundle: what it holds and where its archive lies."""

    version: str
    """The agent's version (`agent.__version__` of the source)."""
    python: str
    """`X.Y` of the Python it was built for."""
    platform: str
    """The host arch (`uname -m`): x86_64 or aarch64."""
    archive: Path
    sha256: str

    @property
    def size(self) -> int:
        return self.archive.stat().st_size


def read_version(source: Path) -> str:
    """`__version__` of `source/agent/__init__.py`, read without importing it."""
    path = source / "agent" / "__init__.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BootstrapError(f"cannot read the agent's version from {path}: {exc}") from None
    for node in tree.body:
        names = [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else []
        if "__version__" in names and isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            return str(node.value.value)
    raise BootstrapError(f"{path}: no `__version__ = \"...\"`")


def build_bundle(cache: Path, *, wheelhouse: Path | None = None, source: Path = REPO_ROOT,
                 python_version: str = "3.11", platform: str = "x86_64", pip: PipRunner | None = None) -> Bundle:
    """The bundle for the agent in `source`, built or taken from `cache` (see the module docstring)."""
    if platform not in _ARCHES:
        raise BootstrapError(f"bundle: no wheels for arch {platform!r} (supported: {', '.join(_ARCHES)})")
    pip = pip or _run_pip
    cache.mkdir(parents=True, exist_ok=True)
    version = read_version(source)
    wheels = wheelhouse if wheelhouse is not None else _download(cache, python_version, platform, pip)
    key = _digest([version, python_version, platform, _tree_hash(source), _wheels_hash(wheels)])[:16]
    archive = cache / f"gamenode-agent-{version}-py{python_version}-{platform}-{key}.tar.gz"
    if archive.is_file():
        return load_bundle(archive)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=cache) as tmp:
        site = Path(tmp) / "site"
        _install(pip, wheels, site, python_version, platform)
        _copy_packages(source, site)
        (site / META_NAME).write_text(json.dumps(
            {"version": version, "python": python_version, "platform": platform}, indent=2) + "\n")
        if python_version == f"{sys.version_info[0]}.{sys.version_info[1]}":
            for package in AGENT_PACKAGES:
                compileall.compile_dir(site / package, quiet=1, workers=1)
        _pack(site, Path(tmp) / "bundle.tar.gz")
        os.replace(Path(tmp) / "bundle.tar.gz", archive)
    return load_bundle(archive)


def load_bundle(archive: Path) -> Bundle:
    """The bundle an archive holds (its `gamenode-bundle.json`), with the archive's sha256."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(META_NAME)
            if member is None:
                raise KeyError(META_NAME)
            meta = json.loads(member.read())
        return Bundle(str(meta["version"]), str(meta["python"]), str(meta["platform"]), Path(archive),
                      _file_sha256(archive))
    except (OSError, KeyError, tarfile.TarError, ValueError, TypeError) as exc:
        raise BootstrapError(f"{archive}: not a gamenode agent bundle ({exc})") from None


def _run_pip(args: Sequence[str]) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise BootstrapError(f"bundle: `pip {args[0]}` failed: " + " | ".join(tail))


def _target_args(python_version: str, platform: str) -> list[str]:
    return ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            "--platform", f"manylinux2014_{platform}", "--platform", f"manylinux_2_17_{platform}"]


def _download(cache: Path, python_version: str, platform: str, pip: PipRunner) -> Path:
    """The cached wheelhouse for these requirements, downloaded once (needs PyPI the first time)."""
    key = _digest([*AGENT_REQUIREMENTS, python_version, platform])[:12]
    wheels = cache / "wheels" / f"py{python_version}-{platform}-{key}"
    if (wheels / ".complete").is_file():
        return wheels
    wheels.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=wheels.parent))
    try:
        pip(["download", "--quiet", "--dest", str(tmp), *_target_args(python_version, platform), *AGENT_REQUIREMENTS])
        (tmp / ".complete").write_text("\n".join(AGENT_REQUIREMENTS) + "\n")
        with contextlib.suppress(OSError):
            shutil.rmtree(wheels)
        os.replace(tmp, wheels)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return wheels


def _install(pip: PipRunner, wheels: Path, site: Path, python_version: str, platform: str) -> None:
    if not wheels.is_dir():
        raise BootstrapError(f"bundle: wheelhouse {wheels} is not a directory")
    args = ["install", "--quiet", "--no-index", "--find-links", str(wheels), "--target", str(site),
            *_target_args(python_version, platform), *AGENT_REQUIREMENTS]
    if python_version != f"{sys.version_info[0]}.{sys.version_info[1]}":
        args.insert(1, "--no-compile")
    pip(args)


def _source_files(source: Path) -> Iterable[Path]:
    for package in AGENT_PACKAGES:
        root = source / package
        if not (root / "__init__.py").is_file():
            raise BootstrapError(f"bundle: {root} is not a package (source {source})")
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                yield path


def _copy_packages(source: Path, site: Path) -> None:
    for path in _source_files(source):
        target = site / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _tree_hash(source: Path) -> str:
    digest = hashlib.sha256()
    for path in _source_files(source):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _wheels_hash(wheels: Path) -> str:
    if not wheels.is_dir():
        raise BootstrapError(f"bundle: wheelhouse {wheels} is not a directory")
    entries = sorted(f"{p.name}:{p.stat().st_size}" for p in wheels.iterdir() if p.suffix == ".whl")
    return _digest(entries)


def _digest(parts: Iterable[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _pack(site: Path, out: Path) -> None:
    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(site / META_NAME, arcname=META_NAME)
        for path in sorted(site.iterdir()):
            if path.name != META_NAME:
                tar.add(path, arcname=path.name)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for chunk in iter(lambda: data.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
