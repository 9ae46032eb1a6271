"""YAML stores: one generic base and a store per record kind.

Nothing here knows about gRPC, HTTP or Textual; services are the only writers.
"""

from __future__ import annotations

from console.store.api_token import ApiTokenStore
from console.store.base import YamlStore
from console.store.credential import CredentialStore
from console.store.datadir import DataDir, DataDirLocked, Stores
from console.store.gamecard import GameCardStore
from console.store.instance import InstanceStore
from console.store.node import NodeHistoryStore, NodeStore
from console.store.platform import PlatformStore
from console.store.rollout import RolloutStore
from console.store.run import RunSecretStore, RunStore

__all__ = [
    "ApiTokenStore",
    "CredentialStore",
    "DataDir",
    "DataDirLocked",
    "GameCardStore",
    "InstanceStore",
    "NodeHistoryStore",
    "NodeStore",
    "PlatformStore",
    "RolloutStore",
    "RunSecretStore",
    "RunStore",
    "Stores",
    "YamlStore",
]
