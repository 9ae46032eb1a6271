"""The committed generated code matches gamenode.proto, and it works as the package ``proto``."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from proto import generate


def test_generated_code_is_current() -> None:
    try:
        problems = generate.stale_files()
    except generate.GenerateError as exc:
        pytest.fail(f"cannot check the generated code: {exc}", pytrace=False)
    assert not problems, "generated code is stale; run `make proto`:\n" + "\n".join(problems)


def test_check_names_the_stale_files(tmp_path: Path) -> None:
    for path in generate.PROTO_DIR.iterdir():
        if path.name.endswith((".proto", "_pb2.py", "_pb2_grpc.py", "_pb2.pyi")):
            shutil.copy(path, tmp_path / path.name)
    with (tmp_path / "gamenode.proto").open("a") as proto:
        proto.write("\nmessage Added {}\n")
    (tmp_path / "gone_pb2.py").write_text("")

    problems = generate.stale_files(tmp_path)

    assert any(p.startswith("gamenode_pb2.py: differs") for p in problems)
    assert any(p.startswith("gamenode_pb2.pyi: differs") for p in problems)
    assert not any(p.startswith("gamenode_pb2_grpc.py") for p in problems)  # services unchanged
    assert "gone_pb2.py: generated from no .proto (remove it)" in problems
    assert generate.main(["--check", "--proto-dir", str(tmp_path)]) == 1

    generate.write(tmp_path)

    assert generate.stale_files(tmp_path) == []
    assert not (tmp_path / "gone_pb2.py").exists()


def test_version_info_round_trips() -> None:
    from proto import gamenode_pb2

    info = gamenode_pb2.VersionInfo(version="0.1.0", api="gamenode.v1")
    data = info.SerializeToString()

    assert gamenode_pb2.VersionInfo.FromString(data) == info
    assert gamenode_pb2.VersionInfo.FromString(data).api == "gamenode.v1"


def test_grpc_module_imports_as_part_of_the_package() -> None:
    from proto import gamenode_pb2, gamenode_pb2_grpc

    method = gamenode_pb2.DESCRIPTOR.services_by_name["HubService"].methods_by_name["GetVersion"]
    assert gamenode_pb2.DESCRIPTOR.package == "gamenode.v1"
    assert method.input_type.full_name == "gamenode.v1.GetVersionRequest"
    assert method.output_type.full_name == "gamenode.v1.VersionInfo"
    assert callable(gamenode_pb2_grpc.add_HubServiceServicer_to_server)
    # protoc's own `import gamenode_pb2` would have needed proto/ on sys.path.
    assert "gamenode_pb2" not in sys.modules
