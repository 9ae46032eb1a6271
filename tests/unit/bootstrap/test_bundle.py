"""Bundle building and caching, with a fake pip (no network, no real wheels)."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from bootstrap.bundle import AGENT_REQUIREMENTS, META_NAME, build_bundle, load_bundle, read_version
from bootstrap.errors import BootstrapError

REPO = Path(__file__).resolve().parents[3]


class FakePip:
    """Records calls; `download` drops a fake wheel, `install --target` makes a fake package."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> None:
        args = list(args)
        self.calls.append(args)
        if args[0] == "download":
            dest = Path(args[args.index("--dest") + 1])
            (dest / "fakedep-1.0-py3-none-any.whl").write_bytes(b"wheel")
        elif args[0] == "install":
            target = Path(args[args.index("--target") + 1])
            (target / "fakedep").mkdir(parents=True)
            (target / "fakedep" / "__init__.py").write_text("")

    def commands(self) -> list[str]:
        return [c[0] for c in self.calls]


def _source(tmp_path: Path, version: str = "9.9.9") -> Path:
    source = tmp_path / "src"
    for package in ("agent", "proto"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    init = source / "agent" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "', f'__version__ = "{version}"  # was "', 1))
    return source


def test_read_version_of_this_repo() -> None:
    import agent

    assert read_version(REPO) == agent.__version__


def test_build_then_cached(tmp_path: Path) -> None:
    pip, source = FakePip(), _source(tmp_path)
    bundle = build_bundle(tmp_path / "cache", source=source, pip=pip)
    assert (bundle.version, bundle.python, bundle.platform) == ("9.9.9", "3.11", "x86_64")
    assert pip.commands() == ["download", "install"]
    download = pip.calls[0]
    assert download[-len(AGENT_REQUIREMENTS):] == list(AGENT_REQUIREMENTS)
    assert "--only-binary=:all:" in download and "manylinux2014_x86_64" in download
    with tarfile.open(bundle.archive) as tar:
        names = tar.getnames()
    assert names[0] == META_NAME
    assert {"agent/__init__.py", "agent/cli.py", "proto/gamenode_pb2.py", "fakedep/__init__.py"} <= set(names)
    again = build_bundle(tmp_path / "cache", source=source, pip=pip)
    assert again == bundle
    assert pip.commands() == ["download", "install"]
    assert load_bundle(bundle.archive) == bundle


def test_a_new_source_reuses_the_wheelhouse(tmp_path: Path) -> None:
    pip = FakePip()
    first = build_bundle(tmp_path / "cache", source=_source(tmp_path / "a", "1.0.0"), pip=pip)
    second = build_bundle(tmp_path / "cache", source=_source(tmp_path / "b", "1.1.0"), pip=pip)
    assert pip.commands() == ["download", "install", "install"]
    assert (first.version, second.version) == ("1.0.0", "1.1.0")
    assert first.sha256 != second.sha256


def test_other_python_is_its_own_bundle_without_bytecode(tmp_path: Path) -> None:
    pip, source = FakePip(), _source(tmp_path)
    bundle = build_bundle(tmp_path / "cache", source=source, python_version="3.9", platform="aarch64", pip=pip)
    assert (bundle.python, bundle.platform) == ("3.9", "aarch64")
    install = pip.calls[-1]
    assert "--no-compile" in install and install[install.index("--python-version") + 1] == "3.9"


def test_operator_wheelhouse_is_used_offline(tmp_path: Path) -> None:
    pip, source = FakePip(), _source(tmp_path)
    house = tmp_path / "house"
    house.mkdir()
    (house / "x-1-py3-none-any.whl").write_bytes(b"x")
    build_bundle(tmp_path / "cache", wheelhouse=house, source=source, pip=pip)
    assert pip.commands() == ["install"]
    assert pip.calls[0][pip.calls[0].index("--find-links") + 1] == str(house)
    assert "--no-index" in pip.calls[0]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(BootstrapError, match="arch"):
        build_bundle(tmp_path, platform="sparc", pip=FakePip())
    with pytest.raises(BootstrapError, match="is not a directory"):
        build_bundle(tmp_path, wheelhouse=tmp_path / "missing", source=_source(tmp_path), pip=FakePip())
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(BootstrapError, match="not a gamenode agent bundle"):
        load_bundle(tmp_path / "junk.tar.gz")
