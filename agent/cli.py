"""The agent's command line: `gamenode agent ...` and `python -m agent ...`.

    gamenode agent --hub HOST:PORT --node-id ID --state-dir DIR [--token TOKEN|@FILE] [--ca FILE] [--insecure]
                   [--once] [--log-level LEVEL] [--data-dir DIR] [--allow-shell] [--port-range 20000-29999]

Every flag may also come from the environment (`GAMENODE_AGENT_HUB`, ...).

The node's identity is a key made on the node and a certificate from the
hub's CA, kept in `STATE_DIR/identity/`. On its first start the agent needs a
join token (`--token`, from `POST /api/v1/nodes/ID/token`; single use, it
expires) and the hub's CA (`--ca`, the hub's `DATA_DIR/ca.pem`): it makes its
key, sends the hub a certificate request with the token, and from then on
streams over mTLS with its certificate, renewing it by itself. Later starts
need neither flag. `--insecure` talks plaintext to a hub started with
`--insecure` (tests, demos). `--token @FILE` reads the token from FILE (the
form to use: a token on the command line is visible in `ps`).

SIGTERM or SIGINT stop the agent cleanly (exit 0). Errors become one line,
"gamenode agent: error: ...", and exit 1; `GAMENODE_DEBUG=1` adds the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from agent import __version__
from agent.errors import AgentError, ConfigError
from agent.settings import AgentSettings

__all__ = ["main"]

PROG = "gamenode agent"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the agent; the exit status (0 after SIGTERM, 1 on an error)."""
    try:
        args = _parser().parse_args(argv)
        settings = AgentSettings.load(
            hub=args.hub, node_id=args.node_id, token=args.token, state_dir=args.state_dir, ca_file=args.ca,
            insecure=args.insecure or None,
            once=args.once or None, log_level=args.log_level, data_dir=args.data_dir,
            allow_shell=args.allow_shell or None, port_range=args.port_range,
        )
        _setup_logging(settings.log_level)
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        return 130
    except (AgentError, OSError, ValueError) as exc:
        if os.environ.get("GAMENODE_DEBUG") == "1":
            traceback.print_exc()
        message = exc.message if isinstance(exc, AgentError) else str(exc)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: AgentSettings) -> None:
    from agent.session import AgentSession  # grpc is imported only once the flags are good

    session = AgentSession(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, session.close)
    try:
        await session.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _setup_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"--log-level: expected debug, info, warning or error (got {level!r})")
    logging.basicConfig(level=numeric, format=LOG_FORMAT)
    logging.getLogger("agent").setLevel(numeric)
    logging.getLogger("grpc").setLevel(max(numeric, logging.INFO))  # its debug lines are per call


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Run the gamenode node agent: one long-lived stream to the hub.")
    parser.add_argument("--hub", metavar="HOST:PORT", help="the hub's gRPC address ($GAMENODE_AGENT_HUB)")
    parser.add_argument("--node-id", metavar="ID", help="this node's id ($GAMENODE_AGENT_NODE_ID)")
    parser.add_argument("--token", metavar="TOKEN|@FILE",
                        help="a join token for the node, or @FILE to read it from FILE; needed only while the node "
                             "has no certificate ($GAMENODE_AGENT_TOKEN)")
    parser.add_argument("--ca", metavar="FILE", type=Path,
                        help="the hub's CA certificate to trust (the hub's DATA_DIR/ca.pem); needed to join, kept "
                             "in STATE_DIR/identity/ca.pem afterwards ($GAMENODE_AGENT_CA_FILE)")
    parser.add_argument("--insecure", action="store_true",
                        help="the hub runs with --insecure: no TLS ($GAMENODE_AGENT_INSECURE=1)")
    parser.add_argument("--state-dir", metavar="DIR", type=Path,
                        help="where the agent keeps its identity, state and outbox ($GAMENODE_AGENT_STATE_DIR)")
    parser.add_argument("--once", action="store_true",
                        help="burst mode: connect, report once, flush the outbox, exit (non-zero on failure)")
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error (default info)")
    parser.add_argument("--data-dir", metavar="DIR", type=Path,
                        help="where instances keep their files (default STATE_DIR/instances; $GAMENODE_AGENT_DATA_DIR)")
    parser.add_argument("--allow-shell", action="store_true",
                        help="let pipeline `shell` steps run commands on this node (off by default)")
    parser.add_argument("--port-range", metavar="LOW-HIGH",
                        help="host ports for game containers (default 20000-29999; $GAMENODE_AGENT_PORT_RANGE)")
    parser.add_argument("--version", action="version", version=f"gamenode agent {__version__}")
    return parser
