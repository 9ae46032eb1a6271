"""The gamenode node agent: one long-lived gRPC stream from a game node to the hub.

Shipped to nodes on its own: nothing here imports `console` or `bootstrap`.
The daemon is `agent.session.AgentSession`; the command line is `agent.cli.main`
(`gamenode agent ...` or `python -m agent ...`).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
