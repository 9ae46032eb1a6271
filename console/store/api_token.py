"""API tokens: one file per token holding its name, role and the HMAC of its secret.

The directory is 0700 and every file 0600 (as every store file is): an HMAC
unlocks nothing without the data dir's key, but nobody else needs to read it.
"""

from __future__ import annotations

import os

from console.models import ApiToken
from console.store.base import YamlStore

__all__ = ["ApiTokenStore"]


class ApiTokenStore(YamlStore[ApiToken]):
    kind = "API token"
    model = ApiToken

    def load(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)
        super().load()
