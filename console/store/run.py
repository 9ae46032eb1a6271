"""Pipeline runs (one file per run) and the secrets of runs not yet handed to their agent."""

from __future__ import annotations

import os

from console.models import PipelineRun, RunSecrets
from console.store.base import YamlStore

__all__ = ["RunSecretStore", "RunStore"]


class RunStore(YamlStore[PipelineRun]):
    kind = "run"
    model = PipelineRun

    def on_node(self, node_id: str) -> list[PipelineRun]:
        return self.filter(lambda r: r.node_id == node_id)


class RunSecretStore(YamlStore[RunSecrets]):
    """0600 files in a 0700 directory; a record lives from a run's start until its agent acks it."""

    kind = "run secrets"
    model = RunSecrets

    def load(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        super().load()

    def write_index(self) -> None:
        """No index: secret values are never copied into a second file."""
