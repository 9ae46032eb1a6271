"""The data directory: one hub at a time, and every store under it.

    DATA_DIR/
      .lock               flock'ed by the hub that owns the directory; holds its pid
      nodes/<id>.yaml
      node-history/<id>.yaml
      instances/<id>.yaml
      gamecards/<id>.yaml
      platforms/<id>.yaml
      credentials/<id>.yaml   the SHA-256 of each node agent's token (0600, in a 0700 directory)
      api_tokens/<id>.yaml    API tokens: name, role and the HMAC of the secret (0600, in a 0700 directory)
      admin.token             the local admin API token the CLI and console use (0600; written by the hub)
      audit.log               who changed what (JSON lines, rotated to .1 .. .3)
      runs/<id>.yaml          pipeline runs (secret params redacted)
      run-secrets/<id>.yaml   secret params of runs their agent has not acked yet (0600, in a 0700 directory)
      rollouts/<id>.yaml      agent rollouts over SSH, per host and step
      known_hosts             the SSH host keys the rollout trusts (OpenSSH format)
      bundles/                agent bundles the rollout built (cached by version and inputs)
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from console.errors import Unavailable
from console.store.api_token import ApiTokenStore
from console.store.base import YamlStore
from console.store.credential import CredentialStore
from console.store.gamecard import GameCardStore
from console.store.instance import InstanceStore
from console.store.node import NodeHistoryStore, NodeStore
from console.store.platform import PlatformStore
from console.store.rollout import RolloutStore
from console.store.run import RunSecretStore, RunStore

__all__ = ["DataDir", "DataDirLocked", "Stores"]


class DataDirLocked(Unavailable):
    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"data directory {path} is in use by another gamenode process (pid {holder})")
        self.path = path
        self.holder = holder


class DataDir:
    """Holds the lock on `path` while open; `open()` refuses a directory in use."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def open(self) -> DataDir:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DataDir:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Stores:
    """Every store of one data directory, loaded, with the directory locked."""

    data_dir: DataDir
    nodes: NodeStore
    node_history: NodeHistoryStore
    instances: InstanceStore
    gamecards: GameCardStore
    platforms: PlatformStore
    credentials: CredentialStore
    runs: RunStore
    run_secrets: RunSecretStore
    rollouts: RolloutStore
    api_tokens: ApiTokenStore
    _all: list[YamlStore[Any]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._all = [self.nodes, self.node_history, self.instances, self.gamecards, self.platforms, self.credentials,
                     self.runs, self.run_secrets, self.rollouts, self.api_tokens]

    @classmethod
    def open(cls, path: Path) -> Stores:
        data_dir = DataDir(path).open()
        try:
            root = data_dir.path
            stores = cls(
                data_dir,
                NodeStore(root / "nodes"),
                NodeHistoryStore(root / "node-history"),
                InstanceStore(root / "instances"),
                GameCardStore(root / "gamecards"),
                PlatformStore(root / "platforms"),
                CredentialStore(root / "credentials"),
                RunStore(root / "runs"),
                RunSecretStore(root / "run-secrets"),
                RolloutStore(root / "rollouts"),
                ApiTokenStore(root / "api_tokens"),
            )
            for store in stores._all:
                store.load()
        except BaseException:
            data_dir.close()
            raise
        return stores

    def close(self) -> None:
        try:
            for store in self._all:
                store.close()
        finally:
            self.data_dir.close()
