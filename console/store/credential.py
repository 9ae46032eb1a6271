"""Agent credentials: one file per node with its pending join token (an HMAC, never the token) and
the serials of its current and previous client certificates.

The directory is 0700 and every file 0600 (as every store file is): nothing
here unlocks anything (the HMAC key is elsewhere), but nobody else needs to
read it. Files from before node certificates (a `sha256` field) still load,
as "no join token, no certificate".
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
