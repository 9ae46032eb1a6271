"""Agent credentials: one file per node holding the SHA-256 of its token.

The directory is 0700 and every file 0600 (as every store file is): a hash is
not a secret that unlocks anything, but nobody else needs to read it.
"""

from __future__ import annotations

import os

from console.models import AgentCredential
from console.store.base import YamlStore

__all__ = ["CredentialStore"]


class CredentialStore(YamlStore[AgentCredential]):
    kind = "credential"
    model = AgentCredential

    def load(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        super().load()
