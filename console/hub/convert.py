"""Between the models and the wire: `GameNode` ↔ `pb.Node`, metrics samples → JSON, runs and their events.

Every conversion between gamenode's records and protobuf messages lives here,
so the REST answers and the gRPC answers say the same thing.

`google.protobuf.Struct` keeps every number as a double: reading one back,
whole numbers become `int` again (`cores: 32`, not `32.0`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from console.models import GameNode, PipelineRun, StepRecord, StepState
from console.service.run_events import RunEvent
from proto import gamenode_pb2 as pb

__all__ = [
    "API",
    "datetime_from_pb",
    "dict_from_struct",
    "node_from_pb",
    "node_to_pb",
    "run_event_from_pb",
    "run_to_pb",
    "sample_resources",
    "sample_time",
    "sample_to_dict",
    "timestamp",
]

API = "gamenode.v1"
"""The wire API the hub speaks (the proto package)."""

_MAPS = {"hardware", "network", "resources", "metrics"}


# --- times ----------------------------------------------------------------------


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=UTC))
    return ts


def datetime_from_pb(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def sample_time(sample: pb.MetricsSample) -> float:
    """When a sample was taken, in Unix seconds (0.0 when the agent left it unset)."""
    at = sample.at
    return at.seconds + at.nanos * 1e-9


# --- structs --------------------------------------------------------------------


_EXACT = 2**53
"""Floats below this in size convert to `int` without loss when whole."""


def dict_from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain Python, whole numbers as `int`."""
    return {k: _struct_value(v) for k, v in struct.fields.items()}


def _struct_value(value: struct_pb2.Value) -> Any:
    """One Struct value as plain Python, in one pass (the console converts ~1,000 node maps a second)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and -_EXACT < number < _EXACT else number
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return {k: _struct_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_struct_value(v) for v in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    return None  # null_value, or unset


# --- nodes ----------------------------------------------------------------------


def node_to_pb(node: GameNode) -> pb.Node:
    maps = node.model_dump(mode="json", include=_MAPS)  # JSON-safe: Struct takes no dates
    msg = pb.Node(
        id=node.id,
        name=node.name,
        model=node.model,
        type=node.type.value,
        status=node.status.value,
        location=node.location,
        labels=node.labels,
        online=node.online,
        created_at=timestamp(node.created_at),
        updated_at=timestamp(node.updated_at),
    )
    for name in ("hardware", "network", "resources", "metrics"):
        if maps[name]:
            getattr(msg, name).update(maps[name])
    if node.last_online is not None:
        msg.last_online.CopyFrom(timestamp(node.last_online))
    return msg


def node_from_pb(msg: pb.Node) -> GameNode:
    return GameNode.model_validate(
        {
            "id": msg.id,
            "name": msg.name,
            "model": msg.model,
            "type": msg.type,
            "status": msg.status or "offline",
            "location": msg.location,
            "hardware": dict_from_struct(msg.hardware),
            "network": dict_from_struct(msg.network),
            "resources": dict_from_struct(msg.resources),
            "metrics": dict_from_struct(msg.metrics),
            "labels": dict(msg.labels),
            "online": msg.online,
            "last_online": datetime_from_pb(msg.last_online) if msg.HasField("last_online") else None,
            "created_at": datetime_from_pb(msg.created_at),
            "updated_at": datetime_from_pb(msg.updated_at),
        }
    )


# --- metrics --------------------------------------------------------------------


def sample_to_dict(sample: pb.MetricsSample) -> dict[str, Any]:
    """A metrics sample as JSON (the node's `metrics` map and the metrics history)."""
    at = sample_time(sample)
    return {
        "at": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "cpu_percent": sample.cpu_percent,
        "load": [sample.load1, sample.load5, sample.load15],
        "memory_total_bytes": sample.memory_total_bytes,
        "memory_used_bytes": sample.memory_used_bytes,
        "memory_percent": sample.memory_percent,
        "disks": [
            {
                "mount": d.mount,
                "total_bytes": d.total_bytes,
                "used_bytes": d.used_bytes,
                "percent": d.percent,
                "read_bytes_per_s": d.read_bytes_per_s,
                "write_bytes_per_s": d.write_bytes_per_s,
            }
            for d in sample.disks
        ],
        "nets": [
            {"interface": n.interface, "rx_bytes_per_s": n.rx_bytes_per_s, "tx_bytes_per_s": n.tx_bytes_per_s}
            for n in sample.nets
        ],
        "gpus": [
            {
                "index": g.index,
                "name": g.name,
                "utilization_percent": g.utilization_percent,
                "memory_total_bytes": g.memory_total_bytes,
                "memory_used_bytes": g.memory_used_bytes,
                "temperature_c": g.temperature_c,
                "power_w": g.power_w,
            }
            for g in sample.gpus
        ],
        "instances": sample.instances,
    }


def sample_resources(sample: pb.MetricsSample, instances: int | None = None) -> dict[str, Any]:
    """Resource use at a glance (the node's `resources` map): the fullest disk, GPUs on average."""
    out: dict[str, Any] = {
        "cpu_percent": sample.cpu_percent,
        "memory_used_bytes": sample.memory_used_bytes,
        "memory_total_bytes": sample.memory_total_bytes,
        "memory_percent": sample.memory_percent,
        "disk_percent": max((d.percent for d in sample.disks), default=0.0),
        "gpu_count": len(sample.gpus),
        "instances": sample.instances if instances is None else instances,
    }
    if sample.gpus:
        out["gpu_utilization_percent"] = sum(g.utilization_percent for g in sample.gpus) / len(sample.gpus)
    return out


# --- pipeline runs ----------------------------------------------------------------

_STEP_FROM_PB: dict[pb.StepState, StepState] = {
    pb.STEP_STATE_PENDING: StepState.PENDING,
    pb.STEP_STATE_RUNNING: StepState.RUNNING,
    pb.STEP_STATE_SUCCEEDED: StepState.SUCCEEDED,
    pb.STEP_STATE_FAILED: StepState.FAILED,
    pb.STEP_STATE_SKIPPED: StepState.SKIPPED,
    pb.STEP_STATE_CANCELLED: StepState.CANCELLED,
}
_STEP_TO_PB: dict[StepState, pb.StepState] = {state: number for number, state in _STEP_FROM_PB.items()}


def run_event_from_pb(event: pb.PipelineEvent) -> RunEvent:
    """An agent's PipelineEvent as plain values (an unknown state becomes None: ignored)."""
    return RunEvent(
        run_id=event.run_id,
        step=event.step,
        state=_STEP_FROM_PB.get(event.state),
        progress=event.progress,
        message=event.message,
        at=datetime_from_pb(event.at) if event.HasField("at") else None,
        outputs=dict_from_struct(event.outputs) if event.HasField("outputs") else {},
        attempt=event.attempt,
        action=event.action,
    )


def run_to_pb(run: PipelineRun) -> pb.Run:
    msg = pb.Run(
        id=run.id,
        node_id=run.node_id,
        pipeline=run.pipeline,
        instance_id=run.instance_id or "",
        state=run.state.value,
        error=run.error or "",
        steps=[_step_to_pb(s) for s in run.steps],
        created_at=timestamp(run.created_at),
    )
    if run.started_at is not None:
        msg.started_at.CopyFrom(timestamp(run.started_at))
    if run.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp(run.finished_at))
    params = run.model_dump(mode="json", include={"params"})["params"]
    if params:
        msg.params.update(params)
    return msg


def _step_to_pb(step: StepRecord) -> pb.StepStatus:
    msg = pb.StepStatus(
        name=step.name, action=step.action, state=_STEP_TO_PB[step.state], progress=step.progress,
        message=step.message, attempt=step.attempt, cleanup=step.cleanup,
    )
    if step.started_at is not None:
        msg.started_at.CopyFrom(timestamp(step.started_at))
    if step.finished_at is not None:
        msg.finished_at.CopyFrom(timestamp(step.finished_at))
    return msg
