"""GameNode <-> pb.Node, Struct numbers, timestamps."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import struct_pb2

from console.hub.convert import dict_from_struct, node_from_pb, node_to_pb
from console.models import GameNode


def test_a_node_survives_the_wire() -> None:
    node = GameNode.model_validate({
        "id": "n1", "name": "Node 1", "model": "R750", "type": "virtual", "status": "maintenance",
        "location": "Berlin", "labels": {"region": "eu"}, "online": True,
        "hardware": {"cpu": {"cores": 32, "ghz": 2.8}, "gpus": [{"model": "L4"}], "tags": ["a", None, True]},
        "network": {"ip": "10.0.0.1"}, "resources": {}, "metrics": {"cpu_percent": 12.5},
        "last_online": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "created_at": datetime(2024, 1, 1, tzinfo=UTC), "updated_at": datetime(2024, 2, 1, tzinfo=UTC),
    })
    msg = node_to_pb(node)
    assert msg.hardware["cpu"]["cores"] == 32.0 and not msg.HasField("resources")
    back = node_from_pb(msg)
    assert back == node
    assert isinstance(back.hardware["cpu"]["cores"], int) and back.hardware["cpu"]["ghz"] == 2.8


def test_a_node_never_online_has_no_last_online() -> None:
    node = GameNode(id="n1", name="n1", type="physical")  # type: ignore[arg-type]
    msg = node_to_pb(node)
    assert not msg.HasField("last_online")
    assert node_from_pb(msg).last_online is None


def test_dates_in_maps_become_strings() -> None:
    node = GameNode(id="n1", name="n1", type="physical",  # type: ignore[arg-type]
                    hardware={"bought": datetime(2023, 3, 4, tzinfo=UTC)})
    assert node_to_pb(node).hardware["bought"] == "2023-03-04T00:00:00Z"


def test_struct_whole_numbers_become_ints() -> None:
    s = struct_pb2.Struct()
    s.update({"a": 1, "b": 1.5, "c": [2, {"d": 3}], "e": None, "f": "x", "g": 1e300})
    assert dict_from_struct(s) == {"a": 1, "b": 1.5, "c": [2, {"d": 3}], "e": None, "f": "x", "g": 1e300}
    assert isinstance(dict_from_struct(s)["g"], float)
