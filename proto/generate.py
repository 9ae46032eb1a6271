"""Regenerate, or check, the Python code generated from ``proto/*.proto``.

    python -m proto.generate          # rewrite *_pb2.py, *_pb2_grpc.py, *_pb2.pyi in proto/
    python -m proto.generate --check  # write nothing; exit 1 naming every stale file

The output depends only on the ``.proto`` files and on the grpcio-tools
version (its bundled protoc), which pyproject.toml pins, so every machine
generates the same bytes. protoc runs in a child process: importing
``grpc_tools.protoc`` in-process would install its dynamic-stub import hooks
and extend ``sys.path``.

protoc writes ``import gamenode_pb2 as gamenode__pb2`` into the generated
modules; they live in the package ``proto``, so that line is rewritten to
``from proto import gamenode_pb2 as gamenode__pb2`` (the sed step such a
Makefile would otherwise need).

Exit status: 0 up to date (or regenerated), 1 stale (``--check``), 2 protoc
missing or failing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["PROTO_DIR", "GenerateError", "main", "render", "stale_files", "write"]

PROTO_DIR = Path(__file__).resolve().parent
"""Where the ``.proto`` sources and the committed generated code live."""

_PACKAGE = "proto"
_SUFFIXES = ("_pb2.py", "_pb2_grpc.py", "_pb2.pyi")
_GRPC_VERSION_LINE = re.compile(r"^GRPC_GENERATED_VERSION = '([^']+)'$", re.MULTILINE)


class GenerateError(Exception):
    """protoc is not installed, or it rejected the ``.proto`` files."""


def render(proto_dir: Path = PROTO_DIR) -> dict[str, bytes]:
    """Generate the code for every ``.proto`` in ``proto_dir``; return file name -> content."""
    sources = sorted(path.name for path in proto_dir.glob("*.proto"))
    if not sources:
        raise GenerateError(f"no .proto files in {proto_dir}")
    if importlib.util.find_spec("grpc_tools") is None:
        raise GenerateError(
            f"grpcio-tools is not installed for {sys.executable}; install the project's "
            "test extras (pip install -e '.[test]', or `make .venv`)"
        )
    modules = [source.removesuffix(".proto") + "_pb2" for source in sources]
    with tempfile.TemporaryDirectory(prefix="gamenode-proto-") as tmp:
        out = Path(tmp)
        _protoc(proto_dir, out, sources)
        generated = sorted(path for path in out.iterdir() if path.name.endswith(_SUFFIXES))
        return {path.name: _fix_imports(path.read_bytes(), modules) for path in generated}


def stale_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    """Say, one line per file, how the committed generated code differs from a fresh run."""
    expected = render(proto_dir)
    problems = []
    for name, content in expected.items():
        path = proto_dir / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif path.read_bytes() != content:
            problems.append(f"{name}: differs from what {_describe_protoc()} generates")
    problems.extend(f"{name}: generated from no .proto (remove it)" for name in _orphans(proto_dir, expected))
    if problems:
        hint = _version_hint(proto_dir)
        if hint:
            problems.append(hint)
    return problems


def write(proto_dir: Path = PROTO_DIR) -> list[str]:
    """Regenerate the code in ``proto_dir``; return the names of files written or removed.

    Files whose content is already right are left alone (their mtime too).
    """
    expected = render(proto_dir)
    changed = []
    for name, content in expected.items():
        path = proto_dir / name
        if path.exists() and path.read_bytes() == content:
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(content)
        tmp.replace(path)
        changed.append(name)
    for name in _orphans(proto_dir, expected):
        (proto_dir / name).unlink()
        changed.append(name)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m proto.generate",
        description="Regenerate the Python code generated from proto/*.proto.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the committed generated code is stale",
    )
    parser.add_argument("--proto-dir", type=Path, default=PROTO_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = stale_files(args.proto_dir)
            for problem in problems:
                print(f"stale: {problem}", file=sys.stderr)
            if problems:
                print("run `make proto` (python -m proto.generate) and commit the result", file=sys.stderr)
                return 1
            print(f"generated code in {args.proto_dir} is up to date")
            return 0
        changed = write(args.proto_dir)
    except GenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in changed:
        print(f"wrote {name}" if (args.proto_dir / name).exists() else f"removed {name}")
    if not changed:
        print(f"generated code in {args.proto_dir} is up to date")
    return 0


def _protoc(proto_dir: Path, out: Path, sources: list[str]) -> None:
    # Run as `python -m grpc_tools.protoc`, which also puts grpc_tools' bundled
    # well-known types (google/protobuf/*.proto) on the include path.
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        "-I.",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *sources,
    ]
    result = subprocess.run(command, cwd=proto_dir, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stderr + result.stdout).strip()
        raise GenerateError(f"protoc failed (exit {result.returncode}) in {proto_dir}:\n{output}")


def _fix_imports(content: bytes, modules: list[str]) -> bytes:
    """Turn protoc's top-level ``import x_pb2 as y`` into ``from proto import x_pb2 as y``."""
    text = content.decode("utf-8")
    for module in modules:
        text = re.sub(
            rf"^import {re.escape(module)} as (\w+)$",
            rf"from {_PACKAGE} import {module} as \1",
            text,
            flags=re.MULTILINE,
        )
    return text.encode("utf-8")


def _orphans(proto_dir: Path, expected: dict[str, bytes]) -> list[str]:
    present = sorted(path.name for path in proto_dir.iterdir() if path.name.endswith(_SUFFIXES))
    return [name for name in present if name not in expected]


def _describe_protoc() -> str:
    try:
        return f"grpcio-tools {importlib.metadata.version('grpcio-tools')}"
    except importlib.metadata.PackageNotFoundError:
        return "the installed grpcio-tools"


def _version_hint(proto_dir: Path) -> str | None:
    """Point out a grpcio-tools version mismatch, the usual cause of spurious staleness."""
    try:
        installed = importlib.metadata.version("grpcio-tools")
    except importlib.metadata.PackageNotFoundError:
        return None
    for path in sorted(proto_dir.glob("*_pb2_grpc.py")):
        match = _GRPC_VERSION_LINE.search(path.read_text(encoding="utf-8"))
        if match and match.group(1) != installed:
            return (
                f"note: {path.name} was generated by grpcio-tools {match.group(1)} but "
                f"{installed} is installed; install the version pyproject.toml pins"
            )
    return None


if __name__ == "__main__":
    sys.exit(main())
