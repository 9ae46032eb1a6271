"""The agent's errors (the agent ships without `console`, so it has its own small tree).

The codes match `console.errors` so that a message means the same on both sides.

    AgentError                 code "error"
    ├── ConfigError            code "invalid_input"   bad flag, environment value or token file
    ├── HubRefused             code "unauthorized"    the hub rejected the node's credential
    ├── HubUnavailable         code "unavailable"     the hub cannot be reached or dropped the stream
    └── StateError             code "corrupt_data"    the state dir cannot be read back
"""

from __future__ import annotations

__all__ = ["AgentError", "ConfigError", "HubRefused", "HubUnavailable", "StateError"]


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(AgentError):
    code = "invalid_input"


class HubRefused(AgentError):
    code = "unauthorized"


class HubUnavailable(AgentError):
    code = "unavailable"


class StateError(AgentError):
    code = "corrupt_data"
