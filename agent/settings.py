"""Agent settings, loaded once before the event loop starts.

Order: explicit values (the CLI's flags) > environment (`GAMENODE_AGENT_<FIELD>`,
e.g. `GAMENODE_AGENT_HUB`, `GAMENODE_AGENT_TOKEN=@/etc/gamenode/token`,
`GAMENODE_AGENT_PORT_RANGE=20000-29999`) > defaults.
A plain dataclass rather than pydantic-settings: the agent stays small on nodes.

Pipelines: each instance's files live in `data_root / <instance id>` (a run
without an instance: `data_root / <run id>`); `data_root` is `data_dir` when
set, else `STATE_DIR/instances`. `shell` steps run only with `allow_shell`.
Host ports for game containers come from `port_range` (inclusive).

Identity: `token` is a join token (`ID.SECRET`), needed only while the state
dir holds no certificate (or to re-enroll a node whose certificate the hub
refused); `ca_file` is the hub CA to pin (default: `STATE_DIR/identity/ca.pem`
once enrolled); `insecure` talks plaintext to a `gamenode hub --insecure`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.identity import CA_FILE, CERT_FILE, IDENTITY_DIR

__all__ = ["DEFAULT_PORT_RANGE", "ENV_PREFIX", "AgentSettings", "default_state_dir", "parse_hub", "parse_port_range",
           "read_token"]

ENV_PREFIX = "GAMENODE_AGENT_"
DEFAULT_PORT_RANGE = (20000, 29999)


def default_state_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/gamenode-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "gamenode-agent"


def parse_hub(value: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port)."""
    host, sep, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(f"--hub: expected HOST:PORT, e.g. hub.example.net:7070 (got {value!r})")
    return host, int(port)


def parse_port_range(value: str) -> tuple[int, int]:
    """`LOW-HIGH` (inclusive, 1-65535, LOW <= HIGH) → (low, high)."""
    low, sep, high = value.strip().partition("-")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise ConfigError(f"--port-range: expected LOW-HIGH, e.g. 20000-29999 (got {value!r})")
    return _check_port_range((int(low), int(high)))


def _check_port_range(value: tuple[int, int]) -> tuple[int, int]:
    low, high = value
    if not 1 <= low <= high <= 65535:
        raise ConfigError(f"--port-range: expected 1 <= LOW <= HIGH <= 65535 (got {low}-{high})")
    return value


def read_token(value: str) -> str:
    """The credential itself, or `@FILE`: the file's content without surrounding whitespace."""
    if value.startswith("@"):
        path = Path(value[1:]).expanduser()
        try:
            value = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"--token: token file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--token: cannot read token file {path}: {exc}") from None
        if not value.strip():
            raise ConfigError(f"--token: token file {path} is empty")
    value = value.strip()
    if not value:
        raise ConfigError("--token: the credential is empty")
    return value


@dataclass(frozen=True)
class AgentSettings:
    hub: str
    """The hub's gRPC address, `HOST:PORT` (Endpoints and Join; the stream port comes from Endpoints)."""
    node_id: str
    token: str = field(default="", repr=False)
    """The node's join token (never logged, never in repr); "" when the node holds a certificate."""
    state_dir: Path = field(default_factory=default_state_dir)
    ca_file: Path | None = None
    """The hub CA to pin (PEM); None: the one saved at enrollment (`STATE_DIR/identity/ca.pem`)."""
    insecure: bool = False
    """The hub runs with --insecure: plaintext, the certificate proven in the Hello instead of by TLS."""
    token_file: Path | None = None
    """Where `token` came from (`--token @FILE`): read again when the agent must join, so a new token
    written there is picked up without a restart."""
    once: bool = False
    """Burst mode: connect once, report once, flush the outbox, exit (non-zero on any failure)."""
    log_level: str = "info"
    heartbeat_interval: float = 5.0
    """Seconds between heartbeats until the hub's Welcome says otherwise."""
    metrics_interval: float = 10.0
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    stable_after: float = 10.0
    """A session that lasted this long (seconds) resets the reconnect backoff."""
    welcome_timeout: float = 15.0
    """Seconds to wait for the Welcome after sending Hello."""
    once_ack_timeout: float = 10.0
    """In burst mode: seconds to wait for the hub to ack the outbox."""
    outbox_limit: int = 10_000
    close_grace: float = 2.0
    """Seconds to end the stream politely on the way out (half-close, then the hub's end of it)."""
    data_dir: Path | None = None
    """Where instances keep their files (one dir per instance); None: `STATE_DIR/instances`."""
    allow_shell: bool = False
    """Whether pipeline `shell` steps may run commands on this node."""
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    """Host ports (inclusive) the agent hands out to game containers."""

    def __post_init__(self) -> None:
        parse_hub(self.hub)
        if not self.node_id or any(c.isspace() for c in self.node_id):
            raise ConfigError(f"--node-id: expected a non-empty id without spaces (got {self.node_id!r})")
        self._check_identity()
        for name in ("heartbeat_interval", "metrics_interval", "backoff_base", "welcome_timeout", "once_ack_timeout",
                     "close_grace"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be > 0")
        if self.backoff_cap < self.backoff_base:
            raise ConfigError("backoff_cap: must be >= backoff_base")
        _check_port_range(self.port_range)

    def _check_identity(self) -> None:
        """A node with no certificate needs a join token; a TLS hub needs a CA to pin."""
        identity = self.state_dir / IDENTITY_DIR
        if not self.token and not (identity / CERT_FILE).is_file():
            raise ConfigError(f"--token is required: node {self.node_id} has no certificate in {identity} yet "
                              f"(issue a join token: POST /api/v1/nodes/{self.node_id}/token; "
                              f"or set {ENV_PREFIX}TOKEN)")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ConfigError(f"--ca: {self.ca_file} is not a file (the hub's DATA_DIR/ca.pem)")
        if not self.insecure and self.ca_file is None and not (identity / CA_FILE).is_file():
            raise ConfigError(f"--ca FILE is required to join a TLS hub: the hub's DATA_DIR/ca.pem (node "
                              f"{self.node_id} has no pinned CA in {identity} yet; or set {ENV_PREFIX}CA_FILE, "
                              "or --insecure for a hub started with --insecure)")

    @property
    def data_root(self) -> Path:
        """The parent of every instance's data dir."""
        return self.data_dir if self.data_dir is not None else self.state_dir / "instances"

    @property
    def hub_host(self) -> str:
        return parse_hub(self.hub)[0]

    @property
    def target(self) -> str:
        """The gRPC target for the hub address."""
        host, port = parse_hub(self.hub)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **explicit: Any) -> AgentSettings:
        """Settings from `explicit` (None values ignored) over `GAMENODE_AGENT_*` over defaults."""
        env = dict(os.environ) if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, str(f.type), raw)
        values.update({k: v for k, v in explicit.items() if v is not None})
        for required in ("hub", "node_id"):
            if required not in values:
                flag = "--" + required.replace("_", "-")
                raise ConfigError(f"{flag} is required (or set {ENV_PREFIX}{required.upper()})")
        if values.get("token"):
            raw = str(values["token"])
            values["token"] = read_token(raw)
            values["token_file"] = Path(raw[1:]).expanduser() if raw.startswith("@") else None
        if isinstance(values.get("port_range"), str):
            values["port_range"] = parse_port_range(values["port_range"])
        return cls(**values)


def _convert(name: str, kind: str, raw: str) -> Any:
    try:
        if kind == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: expected a number (got {raw!r})") from None
    if kind == "tuple[int, int]":
        return parse_port_range(raw)
    if kind == "Path | None":
        return Path(raw) if raw.strip() else None
    return Path(raw) if kind == "Path" else raw
