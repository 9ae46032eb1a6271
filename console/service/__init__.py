"""Business rules over the stores; services are the only writers of stores."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from console.service.api_tokens import ApiTokenService
from console.service.audit import AUDIT_FILE, AuditEntry, AuditLog
from console.service.catalog import PipelineCatalog, PipelineInfo
from console.service.credentials import CredentialService
from console.service.gamecards import GameCardQuery, GameCardService
from console.service.instances import InstanceQuery, InstanceService, InstanceSpec, node_capacity
from console.service.nodes import NodeQuery, NodeService
from console.service.param_secrets import SecretParams
from console.service.platforms import PlatformQuery, PlatformService
from console.service.query import Page
from console.service.rollouts import RolloutHub, RolloutQuery, RolloutRequest, RolloutService
from console.service.runs import Dispatcher, RunEvent, RunQuery, RunRequest, RunService
from console.service.selector import Selector
from console.store import Stores

__all__ = [
    "ApiTokenService",
    "AuditEntry",
    "AuditLog",
    "CredentialService",
    "Dispatcher",
    "GameCardQuery",
    "GameCardService",
    "InstanceQuery",
    "InstanceService",
    "InstanceSpec",
    "NodeQuery",
    "NodeService",
    "Page",
    "PipelineCatalog",
    "PipelineInfo",
    "PlatformQuery",
    "PlatformService",
    "RolloutHub",
    "RolloutQuery",
    "RolloutRequest",
    "RolloutService",
    "RunEvent",
    "RunQuery",
    "RunRequest",
    "RunService",
    "SecretParams",
    "Selector",
    "Services",
    "node_capacity",
]


@dataclass(frozen=True)
class Services:
    """Every service over one set of stores."""

    nodes: NodeService
    instances: InstanceService
    gamecards: GameCardService
    platforms: PlatformService
    credentials: CredentialService
    runs: RunService
    """Pipeline runs; the hub gives it a dispatcher (agents) and its catalog directory."""
    rollouts: RolloutService
    """Agent rollouts over SSH; the hub attaches its loop, address and agent sessions."""
    api_tokens: ApiTokenService
    """Bearer tokens of consoles, the CLI and REST clients (with their roles)."""
    audit: AuditLog
    """Who changed what: `DATA_DIR/audit.log`."""

    @classmethod
    def over(cls, stores: Stores) -> Services:
        # One lock for the rules that span records (an instance's node must
        # exist and have room; a node, card, version or platform in use must
        # not go away), so a check and the write it allows are one step.
        lock = threading.RLock()
        nodes = NodeService(stores.nodes, stores.node_history, stores.instances, lock=lock,
                            credentials=stores.credentials)
        instances = InstanceService(stores.instances, stores.nodes, stores.gamecards, stores.platforms, lock=lock)
        credentials = CredentialService(stores.credentials, stores.nodes, lock=lock, data_dir=stores.data_dir.path)
        runs = RunService(stores.runs, stores.run_secrets, nodes, instances)
        # Secret params by the catalog the run service holds when asked (the hub sets its own).
        secrets = SecretParams(lambda: runs.catalog)
        return cls(
            nodes=nodes,
            instances=instances,
            gamecards=GameCardService(stores.gamecards, stores.platforms, stores.instances, lock=lock,
                                      secrets=secrets),
            platforms=PlatformService(stores.platforms, stores.gamecards, stores.instances, lock=lock,
                                      secrets=secrets),
            credentials=credentials,
            runs=runs,
            rollouts=RolloutService(stores.rollouts, nodes, credentials, stores.data_dir.path),
            api_tokens=ApiTokenService(stores.api_tokens, stores.data_dir.path),
            audit=AuditLog(stores.data_dir.path / AUDIT_FILE),
        )
