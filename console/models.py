"""The records gamenode keeps: nodes, instances, game cards, platforms, pipeline runs.

`GameNode` has the seed's fields and JSON/YAML names, so a client of the
original Go service reads and writes it unchanged; its one addition, `ssh`
(how the rollout reaches the node), is left out of answers and files while unset. Every record is frozen:
stores hand out shared objects, and a change is a new object
(`record.model_copy(update=...)` after validation, or `Model.model_validate`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from console.semver import SemVer

__all__ = [
    "ID_PATTERN",
    "AgentCredential",
    "ApiToken",
    "GameCard",
    "GameCardStatus",
    "GameNode",
    "GameVersion",
    "Instance",
    "InstanceState",
    "JoinToken",
    "Model",
    "NodeCertificate",
    "NodeHistory",
    "NodeStatus",
    "NodeType",
    "PipelineRun",
    "Platform",
    "PlatformState",
    "PortMapping",
    "Resources",
    "Role",
    "RolloutAction",
    "RolloutHost",
    "RolloutRecord",
    "RolloutState",
    "RolloutStep",
    "RunInstanceMode",
    "RunSecrets",
    "RunState",
    "SshAccess",
    "StatusChange",
    "StepRecord",
    "StepState",
    "utcnow",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""Ids name files on disk: letters, digits, `.`, `_`, `-`; 1-128 characters, no leading dot."""

LABEL_KEY_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?)?$"

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE_PATTERN)]
Text = Annotated[str, StringConstraints(max_length=256)]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    """Naive times are taken as UTC, so every stored time compares with every other."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_aware)]


class Model(BaseModel):
    """Base of every gamenode model: unknown fields are mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _none_is_empty(value: Any) -> Any:
    """Go clients send `null` for an empty map; it means `{}`."""
    return {} if value is None else value


# --- nodes ------------------------------------------------------------------


class NodeType(StrEnum):
    PHYSICAL = "physical"
    VIRTUAL = "virtual"
    CONTAINER = "container"


class NodeStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"
    READY = "ready"


_JUMP_HOST = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>[^@\s:]+)(?::(?P<port>[0-9]{1,5}))?$")

NoSpace = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^\S+$")]


class SshAccess(Model):
    """How the rollout reaches a node over SSH."""

    host: NoSpace
    """Host name or address sshd listens on."""
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    user: NoSpace = "root"
    identity_file: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    """Private key file on the hub's host; none: the hub's default keys (or the agent)."""
    use_agent: bool = False
    """Use the keys of the hub's ssh-agent (`SSH_AUTH_SOCK`)."""
    jump_host: NoSpace | None = None
    """A bastion to go through, `user@host:port` (user and port optional)."""
    sudo: bool = False
    """Run the install steps with `sudo -n` (for a user other than root)."""
    prefix: Annotated[str, StringConstraints(min_length=1, max_length=1024)] = "/opt/gamenode"
    """Where everything of the agent lives on the node: an absolute directory, never `/`."""
    python: NoSpace = "python3"
    """The host's Python (3.9 or newer, with venv)."""

    @field_validator("jump_host")
    @classmethod
    def _jump_host(cls, value: str | None) -> str | None:
        match = _JUMP_HOST.match(value) if value is not None else None
        if value is not None and (match is None or not 1 <= int(match["port"] or 22) <= 65535):
            raise ValueError(f"expected [USER@]HOST[:PORT], e.g. admin@bastion:22 (got {value!r})")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not path.is_absolute() or len(path.parts) < 2 or ".." in path.parts or any(c.isspace() for c in value):
            raise ValueError(f"must be an absolute directory other than /, without '..' or spaces (got {value!r})")
        return "/" + "/".join(path.parts[1:])


class GameNode(Model):
    """A machine that runs game servers (the seed's `GameNode`, plus `ssh`)."""

    id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    model: Text = ""
    """Hardware model, e.g. `Dell R750`."""
    type: NodeType
    status: NodeStatus = NodeStatus.OFFLINE
    location: Text = ""
    hardware: dict[str, Any] = Field(default_factory=dict)
    """Inventory: `cpu: {model, cores}`, `memory_mb`, `gpus: [{model, memory_mb}]`, `disks`, ..."""
    network: dict[str, Any] = Field(default_factory=dict)
    """Addresses and links: `ip`, `ports`, `bandwidth_mbps`, `interfaces`, ..."""
    resources: dict[str, Any] = Field(default_factory=dict)
    """Resource use as last reported (filled by the hub from the agent's metrics)."""
    metrics: dict[str, Any] = Field(default_factory=dict)
    """Latest monitoring sample (filled by the hub from the agent's metrics)."""
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    online: bool = False
    """Whether the node's agent is connected now."""
    last_online: Timestamp | None = None
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)
    ssh: SshAccess | None = Field(default=None, exclude_if=lambda value: value is None)
    """How the rollout reaches the node (not a seed field: left out while unset)."""

    _empty_maps = field_validator("hardware", "network", "resources", "metrics", "labels", mode="before")(
        _none_is_empty
    )


class StatusChange(Model):
    """One change of a node's status: who, when and why."""

    at: Timestamp
    from_status: NodeStatus | None
    to_status: NodeStatus
    by: Text
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""


class NodeHistory(Model):
    """The status history of one node, newest last, bounded."""

    id: Id
    changes: list[StatusChange] = Field(default_factory=list)


HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class JoinToken(Model):
    """A node's pending join token as the hub keeps it: its id and an HMAC of its secret, never the secret."""

    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]
    """The token's `ID` part (may be shown and logged)."""
    mac: HexDigest
    """Hex HMAC-SHA256 of the token's secret under the hub's key (`DATA_DIR/hub-secret.key`)."""
    expires_at: Timestamp
    used_at: Timestamp | None = None
    """When a Join consumed it; a used token only gets the same key its certificate again."""


class NodeCertificate(Model):
    """A client certificate the hub's CA signed for a node (the certificate itself is the node's)."""

    serial: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,40}$")]
    """Hex serial number."""
    key_sha256: HexDigest
    """Hex SHA-256 of the certified public key (SubjectPublicKeyInfo)."""
    not_after: Timestamp
    issued_at: Timestamp


class AgentCredential(Model):
    """What the hub keeps of a node agent's identity: a pending join token, the current certificate and
    the one it replaced (accepted until the node connects with the new one)."""

    id: Id
    """The node's id."""
    join_token: JoinToken | None = None
    certificate: NodeCertificate | None = None
    previous: NodeCertificate | None = None
    """The certificate a renewal replaced; accepted until the node connects with `certificate`."""
    created_at: Timestamp = Field(default_factory=utcnow)

    @model_validator(mode="before")
    @classmethod
    def _drop_token_hash(cls, data: Any) -> Any:
        """A record from before node certificates holds `sha256` (of a bearer token no agent may use
        any more): it loads as "no join token, no certificate"."""
        if isinstance(data, dict) and "sha256" in data:
            data = {k: v for k, v in data.items() if k != "sha256"}
        return data

    def accepts(self, serial: str) -> bool:
        """Whether a certificate with this serial may connect: the current one or the previous one."""
        return any(c is not None and c.serial == serial for c in (self.certificate, self.previous))


# --- instances --------------------------------------------------------------


class Resources(Model):
    """CPU cores, memory and GPUs: what an instance needs or a node offers."""

    cpu: Annotated[float, Field(ge=0)] = 0.0
    memory_mb: Annotated[int, Field(ge=0)] = 0
    gpu: Annotated[int, Field(ge=0)] = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu + other.cpu, memory_mb=self.memory_mb + other.memory_mb, gpu=self.gpu + other.gpu
        )

    def fits_in(self, capacity: Resources) -> bool:
        return (
            self.cpu <= capacity.cpu + 1e-9
            and self.memory_mb <= capacity.memory_mb
            and self.gpu <= capacity.gpu
        )


class PortMapping(Model):
    name: Text = ""
    container_port: Annotated[int, Field(ge=1, le=65535)]
    host_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """0 until the node allocates one."""
    protocol: Annotated[str, StringConstraints(pattern=r"^(tcp|udp)$")] = "tcp"


class InstanceState(StrEnum):
    PENDING = "pending"
    PREPARING = "preparing"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def live(self) -> bool:
        """Live instances hold their node's resources."""
        return self not in (InstanceState.STOPPED, InstanceState.FAILED)


class Instance(Model):
    """One game server running (or meant to run) on one node."""

    id: Id
    node_id: Id
    game: Id | None = None
    """Game card id."""
    game_version: Text | None = None
    platform: Id | None = None
    """Platform id."""
    run_id: Text | None = None
    """The pipeline run that created it."""
    container_id: Text | None = None
    ports: list[PortMapping] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    """What the instance reserved on its node."""
    params: dict[str, Any] = Field(default_factory=dict)
    state: InstanceState = InstanceState.PENDING
    error: Annotated[str, StringConstraints(max_length=4096)] | None = None
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)
    started_at: Timestamp | None = None
    stopped_at: Timestamp | None = None


# --- game cards -------------------------------------------------------------


class GameCardStatus(StrEnum):
    ACTIVE = "active"
    DEPRECATED = "deprecated"


class GameVersion(Model):
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """A semantic version, `1.4.2` or `2.0.0-rc.1`."""
    image: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    params: dict[str, Any] = Field(default_factory=dict)
    """Default pipeline parameters for this version."""
    resources: Resources = Field(default_factory=Resources)
    """What one instance of this version needs."""
    status: GameCardStatus = GameCardStatus.ACTIVE
    created_at: Timestamp = Field(default_factory=utcnow)

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        SemVer.parse(value)
        return value


class GameCard(Model):
    """A game and the versions of it that can be deployed."""

    id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    description: Annotated[str, StringConstraints(max_length=4096)] = ""
    platform: Id | None = None
    """The platform its servers run on."""
    versions: list[GameVersion] = Field(default_factory=list)
    default_version: Text | None = None
    """Explicit default; when unset the newest active version is the default."""
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)

    @field_validator("versions")
    @classmethod
    def _unique_versions(cls, versions: list[GameVersion]) -> list[GameVersion]:
        seen: dict[SemVer, str] = {}
        for v in versions:
            key = SemVer.parse(v.version)
            if key in seen:
                same = "" if seen[key] == v.version else f" (as {seen[key]!r})"
                raise ValueError(f"version {v.version!r} listed twice{same}")
            seen[key] = v.version
        return versions


# --- platforms --------------------------------------------------------------


class PlatformState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class Platform(Model):
    """A kind of game runtime and the pipeline that starts it."""

    id: Id
    name: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    description: Annotated[str, StringConstraints(max_length=4096)] = ""
    pipeline: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] = (
        "platform-start"
    )
    """Name of the pipeline in `config/pipeline/` that starts it."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Default pipeline parameters."""
    required_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    """Labels a node must carry to host this platform."""
    config: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Any] = Field(
        default_factory=dict
    )
    state: PlatformState = PlatformState.ENABLED
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)


# --- pipeline runs ----------------------------------------------------------


class RunInstanceMode(StrEnum):
    """How a run ties to an instance (the pipeline's `metadata.instance`)."""

    CREATE = "create"
    """The run creates its instance (resources reserved at start) and brings it up."""
    STOP = "stop"
    """The run stops an existing instance; success releases its resources."""
    USE = "use"
    """The run acts on an existing instance (upgrade, restart)."""
    NONE = "none"


class RunState(StrEnum):
    """pending → dispatched → running → succeeded | failed; cancelling → cancelled (see `RunService`)."""

    PENDING = "pending"
    """Stored, its RunPipeline command not yet acked by the agent."""
    DISPATCHED = "dispatched"
    """The agent acked the command; no event from the run yet."""
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLING = "cancelling"
    """CancelRun sent; the agent stops the current step and runs the cleanup."""
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (StepState.PENDING, StepState.RUNNING)


class StepRecord(Model):
    """One step of a run as the agent reported it."""

    name: str
    action: str = ""
    state: StepState = StepState.PENDING
    progress: Annotated[int, Field(ge=0, le=100)] = 0
    message: Annotated[str, StringConstraints(max_length=4096)] = ""
    """What it is doing, or (failed) why it failed."""
    attempt: Annotated[int, Field(ge=0)] = 0
    """1 for the first try, 2.. for retries; 0 until it runs."""
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    cleanup: bool = False
    """An `on_failure` cleanup step."""
    outputs: dict[str, Any] = Field(default_factory=dict)
    """What a succeeded step produced (container_id, ports, digest, ...)."""


class PipelineRun(Model):
    """One run of a pipeline on one node.

    `params` never holds a secret param's value: those read `***` (see `RunSecrets`).
    """

    id: Id
    """`run-<hex>`."""
    node_id: Id
    pipeline: Text
    """The catalog name (`platform-start`), or `inline` for YAML given with the request."""
    pipeline_yaml: str
    params: dict[str, Any] = Field(default_factory=dict)
    """Resolved params (defaults filled in), secret values redacted as `***`."""
    instance_id: Id | None = None
    instance_mode: RunInstanceMode = RunInstanceMode.NONE
    state: RunState = RunState.PENDING
    error: Annotated[str, StringConstraints(max_length=4096)] | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    created_by: Text = ""
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    """Why it was started."""
    cancel_reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    """Why it was cancelled (set with the cancel request)."""

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)


class RunSecrets(Model):
    """The real values of a run's secret params, kept (0600) only until its agent has the run."""

    id: Id
    """The run's id."""
    params: dict[str, Any] = Field(default_factory=dict)


# --- agent rollouts ---------------------------------------------------------


class RolloutAction(StrEnum):
    INSTALL = "install"
    """Install, or upgrade to the hub's build (a host already on it is left unchanged)."""
    UNINSTALL = "uninstall"
    """Stop and remove the agent and its files; revoke its credential."""


class RolloutState(StrEnum):
    """pending → running → succeeded | failed | cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    """Every host ended installed, upgraded, unchanged or removed."""
    FAILED = "failed"
    """A host failed or was rolled back, or the rollout could not start (`error`)."""
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (RolloutState.SUCCEEDED, RolloutState.FAILED, RolloutState.CANCELLED)


class RolloutStep(Model):
    """One step on one host: connect, preflight, upload, install, configure, start, verify, ..."""

    name: Text
    state: StepState = StepState.PENDING
    message: Annotated[str, StringConstraints(max_length=4096)] = ""
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None


class RolloutHost(Model):
    """One host of a rollout and how it went."""

    node_id: Id
    host: Text
    """`host:port` it was reached at."""
    from_version: Text | None = None
    to_version: Text | None = None
    result: Text = ""
    """Empty until it ends; then installed, upgraded, unchanged, rolled_back, removed, failed or cancelled."""
    error: Annotated[str, StringConstraints(max_length=4096)] = ""
    duration_s: Annotated[float, Field(ge=0)] = 0.0
    steps: list[RolloutStep] = Field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.result in ("failed", "rolled_back", "cancelled")


class RolloutRecord(Model):
    """One rollout of the agent to a set of nodes over SSH (`ro-<hex>`)."""

    id: Id
    action: RolloutAction
    state: RolloutState = RolloutState.PENDING
    parallel: Annotated[int, Field(ge=1)] = 10
    canary: Annotated[int, Field(ge=0)] = 0
    trust_new_host_keys: bool = False
    timeout: Annotated[float, Field(gt=0)] = 120.0
    """Seconds a host's new agent has to come online on the new version."""
    version: Text | None = None
    """The agent version being installed (known once the bundle is ready)."""
    error: Annotated[str, StringConstraints(max_length=4096)] = ""
    """Why the rollout as a whole failed (no bundle, ...); a host's error is on the host."""
    hosts: list[RolloutHost] = Field(default_factory=list)
    created_by: Text = ""
    created_at: Timestamp = Field(default_factory=utcnow)
    updated_at: Timestamp = Field(default_factory=utcnow)
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None

    def host(self, node_id: str) -> RolloutHost | None:
        return next((h for h in self.hosts if h.node_id == node_id), None)


# --- API tokens and roles ---------------------------------------------------


class Role(StrEnum):
    """What an API token may do; each role may do everything the ones below it may.

    Ordered by power, not by name: `Role.VIEWER < Role.OPERATOR < Role.ADMIN`.
    """

    VIEWER = "viewer"
    """Every read."""
    OPERATOR = "operator"
    """Pipelines and runs, instances (launch, stop, actions, register), node maintenance status, ping."""
    ADMIN = "admin"
    """Nodes, labels, agent join tokens, API tokens, rollouts, platforms, game cards, SSH host keys, audit."""

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def covers(self, needed: Role) -> bool:
        """Whether a holder of this role may do what needs `needed`."""
        return self.rank >= needed.rank

    def __lt__(self, other: object) -> bool:
        return self.rank < other.rank if isinstance(other, Role) else NotImplemented

    def __le__(self, other: object) -> bool:
        return self.rank <= other.rank if isinstance(other, Role) else NotImplemented

    def __gt__(self, other: object) -> bool:
        return self.rank > other.rank if isinstance(other, Role) else NotImplemented

    def __ge__(self, other: object) -> bool:
        return self.rank >= other.rank if isinstance(other, Role) else NotImplemented


_ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


class ApiToken(Model):
    """An API token as the hub keeps it: an HMAC of its secret (`console.service.tokens_crypto`), never the token."""

    id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{6,64}$")]
    """The token's `ID` part (shown, logged and audited; the token is `ID.SECRET`)."""
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    """Who or what holds it; the actor in the audit log and status history."""
    role: Role
    mac: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    """Hex HMAC-SHA256 of the secret, keyed by the data dir's `hub-secret.key`."""
    created_at: Timestamp = Field(default_factory=utcnow)
    created_by: Text = ""
    expires_at: Timestamp | None = None
    """None: never expires."""

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at
