"""`HubService` messages as the plain dicts the console's screens read.

Every dict has the REST API's field names. Times are timezone-aware
`datetime`s (UTC), or None when unset; step and run states are the REST
strings (`"running"`, not `STEP_STATE_RUNNING`); `google.protobuf.Struct`
maps are plain dicts with whole numbers as `int`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from console.hub.convert import datetime_from_pb, dict_from_struct, sample_to_dict
from proto import gamenode_pb2 as pb

__all__ = [
    "STEP_STATES",
    "entry_to_dict",
    "from_json",
    "host_key_to_dict",
    "node_to_dict",
    "pipeline_to_dict",
    "rollout_to_dict",
    "run_to_dict",
    "sample_dict",
]

STEP_STATES: dict[int, str] = {
    pb.STEP_STATE_UNSPECIFIED: "pending",
    pb.STEP_STATE_PENDING: "pending",
    pb.STEP_STATE_RUNNING: "running",
    pb.STEP_STATE_SUCCEEDED: "succeeded",
    pb.STEP_STATE_FAILED: "failed",
    pb.STEP_STATE_SKIPPED: "skipped",
    pb.STEP_STATE_CANCELLED: "cancelled",
}
"""A step's wire state as the REST string."""


def _time(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    return datetime_from_pb(ts)


def _is_time_key(key: str) -> bool:
    return key == "at" or key.endswith("_at") or key == "last_online"


def _times(value: Any) -> Any:
    """JSON with its ISO 8601 times (keys `at`, `*_at`, `last_online`) as datetimes."""
    if isinstance(value, dict):
        return {k: _parse(v) if _is_time_key(k) else _times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_times(v) for v in value]
    return value


def _parse(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def from_json(text: str) -> Any:
    """A `JsonValue` answer (the REST answer's JSON) with its times as datetimes."""
    return _times(json.loads(text))


# --- nodes ---------------------------------------------------------------------------


def node_to_dict(node: pb.Node) -> dict[str, Any]:
    """A node: the seed's GameNode fields, `metrics`/`resources` live from its agent."""
    return {
        "id": node.id, "name": node.name, "model": node.model, "type": node.type, "status": node.status,
        "location": node.location, "hardware": dict_from_struct(node.hardware),
        "network": dict_from_struct(node.network), "resources": dict_from_struct(node.resources),
        "metrics": dict_from_struct(node.metrics), "labels": dict(node.labels), "online": node.online,
        "last_online": _time(node, "last_online"), "created_at": _time(node, "created_at"),
        "updated_at": _time(node, "updated_at"),
    }


def sample_dict(sample: pb.MetricsSample) -> dict[str, Any]:
    """A metrics sample as REST answers it (`at`, `cpu_percent`, `load`, `memory_*`, `disks`, `nets`,
    `gpus`, `instances`), `at` a datetime."""
    out = sample_to_dict(sample)
    out["at"] = _time(sample, "at")
    return out


# --- runs and rollouts -------------------------------------------------------------------


def _step_to_dict(step: pb.StepStatus) -> dict[str, Any]:
    return {
        "name": step.name, "action": step.action, "state": STEP_STATES.get(step.state, "pending"),
        "progress": step.progress, "message": step.message, "attempt": step.attempt,
        "started_at": _time(step, "started_at"), "finished_at": _time(step, "finished_at"),
        "cleanup": step.cleanup,
    }


def run_to_dict(run: pb.Run) -> dict[str, Any]:
    """A pipeline run: `state` is pending, running, succeeded, failed, cancelling or cancelled."""
    return {
        "id": run.id, "node_id": run.node_id, "pipeline": run.pipeline, "instance_id": run.instance_id or None,
        "state": run.state, "error": run.error or None, "steps": [_step_to_dict(s) for s in run.steps],
        "params": dict_from_struct(run.params), "created_at": _time(run, "created_at"),
        "started_at": _time(run, "started_at"), "finished_at": _time(run, "finished_at"),
    }


def _rollout_step(step: pb.RolloutStep) -> dict[str, Any]:
    return {
        "name": step.name, "state": STEP_STATES.get(step.state, "pending"), "message": step.message,
        "started_at": _time(step, "started_at"), "finished_at": _time(step, "finished_at"),
    }


def _rollout_host(host: pb.RolloutHost) -> dict[str, Any]:
    return {
        "node_id": host.node_id, "host": host.host, "from_version": host.from_version or None,
        "to_version": host.to_version or None, "result": host.result, "error": host.error,
        "duration_s": host.duration_s, "steps": [_rollout_step(s) for s in host.steps],
    }


def rollout_to_dict(rollout: pb.Rollout) -> dict[str, Any]:
    """A rollout: `state` pending, running, succeeded, failed or cancelled; each host's steps and result."""
    return {
        "id": rollout.id, "action": rollout.action, "state": rollout.state, "error": rollout.error,
        "version": rollout.version or None, "hosts": [_rollout_host(h) for h in rollout.hosts],
        "created_at": _time(rollout, "created_at"), "started_at": _time(rollout, "started_at"),
        "finished_at": _time(rollout, "finished_at"),
    }


# --- logs, pipelines, host keys ------------------------------------------------------------


def entry_to_dict(entry: pb.LogEntry) -> dict[str, Any]:
    """A log line: `at`, `node_id`, `source` ("run:<id>", "instance:<id>", "agent"), `level`, `stream`, `text`."""
    return {
        "at": _time(entry, "at"), "node_id": entry.node_id, "source": entry.source, "level": entry.level,
        "stream": entry.stream, "text": entry.text,
    }


def pipeline_to_dict(info: dict[str, Any]) -> dict[str, Any]:
    """A catalog pipeline with `params` keyed by name: {name: {type, default, required, secret,
    description, choices}}."""
    params = {p["name"]: {k: v for k, v in p.items() if k != "name"} for p in info.get("params", [])}
    return {**info, "params": params}


def host_key_to_dict(key: pb.HostKey) -> dict[str, Any]:
    """`node_id`, `host`, `port`, `fingerprint` (SHA256:...), `verdict` (known, unknown or changed)."""
    return {"node_id": key.node_id, "host": key.host, "port": key.port, "fingerprint": key.fingerprint,
            "verdict": key.verdict}
