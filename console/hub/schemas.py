"""Request bodies of the REST API, and the answers that are not models themselves."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from console.models import (
    GameCardStatus,
    GameVersion,
    InstanceState,
    NodeStatus,
    NodeType,
    PlatformState,
    PortMapping,
    Resources,
    SshAccess,
)

__all__ = [
    "AgentToken",
    "ConfigValue",
    "DefaultVersionBody",
    "InstanceStateBody",
    "InstanceUpdate",
    "LabelsPatch",
    "MetricsHistory",
    "NodeBody",
    "NodeResources",
    "NodeStatusBody",
    "NodeUpdate",
    "PingAnswer",
    "PlatformStateBody",
    "VersionStatusBody",
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeUpdate(_Body):
    """Fields of a node to replace; those left out keep their value.

    `online`, `last_online`, `created_at` and `updated_at` belong to the hub:
    they are accepted (a Go client sends its whole struct back) and ignored.
    """

    id: str | None = None
    name: str | None = None
    model: str | None = None
    type: NodeType | None = None
    status: NodeStatus | Literal[""] | None = None
    """A change of status here follows the same rules as `PUT .../status`."""
    location: str | None = None
    hardware: dict[str, Any] | None = None
    network: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    labels: dict[str, str] | None = None
    online: bool | None = None
    last_online: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ssh: SshAccess | None = None
    """How the rollout reaches the node; `null` removes it."""


class NodeBody(NodeUpdate):
    """A new node (the seed's `GameNode`); `status` defaults to offline."""

    id: str
    name: str
    type: NodeType


class NodeStatusBody(_Body):
    status: str
    """online, offline, maintenance or ready."""
    reason: str = ""


class LabelsPatch(_Body):
    set: dict[str, str] = Field(default_factory=dict)
    """Labels to add or change."""
    remove: list[str] = Field(default_factory=list)
    """Label keys to drop."""


class NodeResources(_Body):
    capacity: Resources
    reserved: Resources
    free: Resources


class InstanceUpdate(_Body):
    container_id: str | None = None
    ports: list[PortMapping] | None = None
    run_id: str | None = None
    params: dict[str, Any] | None = None


class InstanceStateBody(_Body):
    state: InstanceState
    error: str | None = None
    container_id: str | None = None


class VersionStatusBody(_Body):
    status: GameCardStatus


class DefaultVersionBody(_Body):
    version: str | None
    """null goes back to "the newest active version"."""


class PlatformStateBody(_Body):
    state: PlatformState


class ConfigValue(_Body):
    value: Any


GameVersionBody = GameVersion


# --- answers ----------------------------------------------------------------------


class AgentToken(_Body):
    """A node's new join token: shown this once, stored only as an HMAC; single use."""

    node_id: str
    token: str
    """`ID.SECRET`: the agent's `--token`, exchanged (with a CSR) for its client certificate."""
    expires_at: datetime
    """When the token stops working if it was not used."""


class MetricsHistory(_Body):
    node_id: str
    samples: list[dict[str, Any]]
    """Oldest first: `at`, `cpu_percent`, `load` [1, 5, 15 min], `memory_*`, `disks`, `nets`, `gpus`, `instances`."""


class PingAnswer(_Body):
    node_id: str
    rtt_ms: float
    """Hub → agent → hub, over the agent's stream."""
