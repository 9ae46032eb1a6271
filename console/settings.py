"""Hub settings, loaded once before the event loop starts.

Order: constructor arguments (the CLI's flags) > environment (`GAMENODE_...`,
`__` for nesting) > the YAML file named by `GAMENODE_CONFIG` > defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from console.store.yamlio import parse_yaml

__all__ = ["UNIX_PREFIX", "HubSettings", "default_data_dir", "parse_listen", "split_listen"]

UNIX_PREFIX = "unix:"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gamenode"


def parse_listen(value: str, what: str = "listen address") -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` → (host, port); port 0 picks a free one."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{what}: expected HOST:PORT, e.g. 127.0.0.1:8080 (got {value!r})")
    return host, int(port)


def split_listen(value: str, what: str = "grpc listen address") -> list[str]:
    """A comma-separated list of `HOST:PORT` and `unix:PATH` addresses, each checked."""
    addresses = [part.strip() for part in value.split(",") if part.strip()]
    if not addresses:
        raise ValueError(f"{what}: expected HOST:PORT or unix:PATH (got {value!r})")
    for address in addresses:
        if address.startswith(UNIX_PREFIX):
            if not address.removeprefix(UNIX_PREFIX):
                raise ValueError(f"{what}: unix: needs a socket path, e.g. unix:/run/gamenode/hub.sock")
        else:
            parse_listen(address, what)
    return addresses


class HubSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GAMENODE_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the YAML stores live; locked while a hub runs."""
    http_listen: str = "127.0.0.1:8080"
    """REST API address (`HOST:PORT`)."""
    grpc_listen: str = "127.0.0.1:7070"
    """Agent and console gRPC addresses: `HOST:PORT` and `unix:PATH`, comma-separated (agents dial the
    first TCP one)."""
    advertise_address: str | None = None
    """The gRPC address (`HOST:PORT`) the rollout tells agents to dial; default: the bound gRPC address."""
    agent_listen: str | None = None
    """The mTLS address agents stream on (`HOST:PORT`); default: the first TCP `grpc_listen` host, its port + 1
    (0 when that port is 0). Unused with `insecure` (agents stream on the gRPC port)."""
    insecure: bool = False
    """Plaintext on every TCP listener, agents stream on the gRPC port and prove their key in the Hello: for a
    trusted network only (the hub warns at start). Consoles and REST still need tokens."""
    join_token_ttl: float = Field(default=3600.0, ge=60, le=86400)
    """Seconds a node's join token is valid (single use)."""
    node_cert_days: float = Field(default=7.0, gt=0, le=365)
    """Days a node's client certificate is valid; agents renew it on their stream at two thirds of that."""
    rollout_wheelhouse: Path | None = None
    """Wheels to build the agent bundle from offline (else `pip download` fetches the agent's dependencies)."""
    rollout_bundle: Path | None = None
    """A prebuilt agent bundle archive (`bootstrap.build_bundle`) to roll out instead of building one."""
    log_level: str = "info"
    heartbeat_interval: float = Field(default=5.0, gt=0)
    """Seconds between agent heartbeats in a small fleet; widened as the fleet grows (`heartbeat_rate`)."""
    metrics_interval: float = Field(default=10.0, gt=0)
    """Seconds between agent metrics samples in a small fleet; at least twice the heartbeat interval."""
    heartbeat_rate: float = Field(default=2000.0, gt=0)
    """Heartbeats per second the hub aims to stay under: with N agents the interval is at least N / rate."""
    metrics_history: float = Field(default=3600.0, gt=0)
    """Seconds of metrics history kept in memory per node (a ring of history / metrics interval samples)."""
    pipeline_dir: Path | None = None
    """The named pipelines (`<name>.yaml`); default: `config/pipeline/` of the gamenode checkout."""
    log_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    """Bytes a log file (per node and run, instance or agent) may hold before it is rotated to `.1`."""
    log_keep: int = Field(default=5, ge=0)
    """Rotated log files kept per source (`.1` … `.N`); older ones are deleted."""
    log_retention: float = Field(default=7 * 86400.0, gt=0)
    """Seconds log files are kept after their newest entry (swept hourly)."""
    event_rate: float = Field(default=200.0, gt=0)
    """Messages per second one agent stream may send; past `event_burst` the hub reads it slower (back-pressure)."""
    event_burst: int = Field(default=2000, ge=1)
    """Messages an agent stream may send at once above `event_rate` (after a reconnect: its outbox)."""

    @field_validator("http_listen", "advertise_address", "agent_listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @field_validator("grpc_listen")
    @classmethod
    def _grpc_listen(cls, value: str) -> str:
        split_listen(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("GAMENODE_CONFIG")
        if config:
            _check_yaml(Path(config))
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return tuple(sources)

    @classmethod
    def load(cls, **overrides: Any) -> HubSettings:
        """Settings from every source, with the given non-None values strongest."""
        return cls(**{k: v for k, v in overrides.items() if v is not None})


def _check_yaml(path: Path) -> None:
    """A YAML mistake in the settings file as `FILE:LINE: invalid YAML: ...` (CorruptData, which the CLI
    prints as a one-line error) rather than PyYAML's traceback from inside pydantic-settings."""
    if path.is_file():
        parse_yaml(path.read_bytes(), str(path))
