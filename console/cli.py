"""The `gamenode` command.

    gamenode hub     [--data-dir DIR] [--http-listen HOST:PORT] [--grpc-listen HOST:PORT[,unix:PATH]]
                     [--agent-listen HOST:PORT] [--insecure]
    gamenode console [--data-dir DIR] [--connect HOST:PORT]
    gamenode demo    [--data-dir DIR] [--http-listen HOST:PORT] [--grpc-listen HOST:PORT] [--no-agents] [--headless]
    gamenode agent ...      (the node agent; its own flags, see `gamenode agent --help`)
    gamenode pipeline validate FILE [FILE...]
    gamenode rollout --nodes ID,... | --selector SEL | --all-without-agent [--upgrade | --uninstall] ...
    gamenode nodes add ID --ssh-host HOST [--ssh-port P] [--ssh-user U] [--identity FILE] [--label K=V]...
    gamenode ssh trust NODE [--yes]
    gamenode tokens create --name N --role viewer|operator|admin [--ttl-days D] | list | revoke ID [--hub URL]
    gamenode version

The rollout, nodes and ssh commands talk to a running hub (`console.cli_rollout`);
the console and the interactive demo are in `console.cli_console`.

Errors become one line on stderr and a non-zero exit; `GAMENODE_DEBUG=1`
shows the traceback too.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from console.cli_console import add_console_command, interactive, run_demo_console
from console.cli_rollout import add_commands as _add_hub_commands
from console.cli_tokens import add_tokens_command
from console.errors import GamenodeError
from console.hub.app import VERSION

__all__ = ["main"]

DEMO_DATA_DIR = Path(".demo")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        return _run_agent(argv[1:])  # the agent parses its own flags
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("GAMENODE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except KeyboardInterrupt:
        return 130
    except (GamenodeError, ValidationError, ValueError, OSError) as exc:
        if os.environ.get("GAMENODE_DEBUG") == "1":
            traceback.print_exc()
        message = exc.message if isinstance(exc, GamenodeError) else str(exc)
        print(f"gamenode: error: {message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gamenode", description="Operate a fleet of game-server nodes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hub = sub.add_parser("hub", help="run the headless hub (gRPC for agents and consoles, REST API)")
    _hub_flags(hub)
    hub.set_defaults(handler=_run_hub)

    add_console_command(sub)

    demo = sub.add_parser("demo", help="a hub, three local agents and the console on a demo data dir with a "
                                       "sample fleet")
    _hub_flags(demo, data_dir=DEMO_DATA_DIR)
    demo.add_argument("--no-agents", action="store_true", help="start no local agents")
    demo.add_argument("--headless", action="store_true",
                      help="no console: print the addresses and serve until Ctrl-C (the default when stdin or "
                           "stdout is not a terminal)")
    demo.set_defaults(handler=_run_demo)

    sub.add_parser("agent", help="run the node agent (`gamenode agent --help` for its flags)", add_help=False)

    pipeline = sub.add_parser("pipeline", help="work with pipeline files (config/pipeline/*.yaml)")
    pipeline_sub = pipeline.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")
    validate = pipeline_sub.add_parser("validate", help="check pipeline files; print every mistake with its line")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.set_defaults(handler=_validate_pipelines)

    _add_hub_commands(sub)
    add_tokens_command(sub)

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(handler=lambda _: print(f"gamenode {VERSION}") or 0)
    return parser


def _hub_flags(parser: argparse.ArgumentParser, data_dir: Path | None = None) -> None:
    parser.add_argument("--data-dir", type=Path, default=data_dir,
                        help="data directory (default: $GAMENODE_DATA_DIR or ~/.local/share/gamenode)")
    parser.add_argument("--http-listen", metavar="HOST:PORT", help="REST API address (default 127.0.0.1:8080)")
    parser.add_argument("--grpc-listen", metavar="HOST:PORT",
                        help="gRPC address for agents and consoles (default 127.0.0.1:7070); more, comma-separated, "
                             "e.g. 127.0.0.1:7070,unix:/run/gamenode/hub.sock")
    parser.add_argument("--agent-listen", metavar="HOST:PORT",
                        help="mTLS address agents stream on (default: the first gRPC host, its port + 1)")
    parser.add_argument("--insecure", action="store_true", default=None,
                        help="no TLS: plaintext gRPC, agents stream on the gRPC port and prove their key in the "
                             "hello (trusted networks only)")


def _validate_pipelines(args: argparse.Namespace) -> int:
    """`FILE: ok (N steps)`, or each problem on a line; exit 1 when any file has one (or cannot be read)."""
    from agent.errors import PipelineError
    from agent.pipeline.spec import load_pipeline

    failed = False
    for path in args.files:
        try:
            pipeline = load_pipeline(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            failed = True
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        except UnicodeDecodeError as exc:
            failed = True
            print(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})", file=sys.stderr)
        except PipelineError as exc:
            failed = True
            for problem in exc.problems:
                print(problem if problem.source and problem.line is not None else f"{path}: {problem}")
        else:
            print(f"{path}: ok ({len(pipeline.steps)} steps)")
    return 1 if failed else 0


def _run_hub(args: argparse.Namespace) -> int:
    from console.hub.server import Hub
    from console.settings import HubSettings

    settings = HubSettings.load(data_dir=args.data_dir, http_listen=args.http_listen, grpc_listen=args.grpc_listen,
                                agent_listen=args.agent_listen, insecure=args.insecure)

    def ready(hub: Hub) -> None:
        mode = "plaintext" if settings.insecure else "mTLS"
        agents = f"agents on {hub.agent_address} ({mode}), " if hub.agent_address else ""
        print(f"gamenode hub: REST API on {hub.http_url} (OpenAPI at {hub.http_url}/docs), "
              f"gRPC on {', '.join(hub.grpc_addresses)}, {agents}data in {settings.data_dir}", flush=True)

    asyncio.run(Hub(settings).run(on_ready=ready))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    """The console on a demo hub; headless (today's demo) with --headless or without a terminal."""
    if not args.headless and interactive():
        return run_demo_console(args)
    return _run_headless_demo(args)


def _run_headless_demo(args: argparse.Namespace) -> int:
    from console.hub.demo import DemoAgents, seed_demo
    from console.hub.server import Hub, ListenError
    from console.service import Services
    from console.settings import HubSettings
    from console.store import Stores

    settings = HubSettings.load(data_dir=args.data_dir, http_listen=args.http_listen, grpc_listen=args.grpc_listen,
                                agent_listen=args.agent_listen, insecure=args.insecure)
    stores = Stores.open(settings.data_dir)
    try:
        services = Services.over(stores)
        seeded = seed_demo(services)
        agents = None if args.no_agents else DemoAgents.prepare(services, settings.data_dir / "agents")
    finally:
        stores.close()

    def ready(hub: Hub) -> None:
        print(f"gamenode demo: {'seeded a sample fleet in' if seeded else 'using'} {settings.data_dir}")
        if agents is not None:
            agents.start(hub.grpc_address, insecure=settings.insecure)
            print(f"  agents     {len(agents.tokens)} local agents as {', '.join(agents.tokens)} "
                  f"(logs in {agents.root}/*/agent.log)")
        print(f"  REST API   {hub.http_url}/api/v1/nodes")
        print(f"  OpenAPI    {hub.http_url}/docs")
        print(f"  gRPC       {', '.join(hub.grpc_addresses)}")
        print(f"  try        curl -s -H \"Authorization: Bearer $(cat {settings.data_dir / 'admin.token'})\" "
              f"'{hub.http_url}/api/v1/nodes?selector=region=eu&sort=-status'")
        print("  stop       Ctrl-C", flush=True)

    try:
        asyncio.run(Hub(settings).run(on_ready=ready))
    except ListenError as exc:
        env = {"GAMENODE_HTTP_LISTEN", "GAMENODE_GRPC_LISTEN", "GAMENODE_AGENT_LISTEN"} & set(os.environ)
        if args.http_listen or args.grpc_listen or args.agent_listen or env:
            raise
        print(f"gamenode demo: {exc.message}; using free ports instead", flush=True)
        free = {"http_listen": "127.0.0.1:0", "grpc_listen": "127.0.0.1:0"}
        asyncio.run(Hub(settings.model_copy(update=free)).run(on_ready=ready))
    finally:
        if agents is not None:
            agents.stop()
    return 0


def _run_agent(argv: list[str]) -> int:
    """`gamenode agent ...`: the agent's own command line (`agent.cli.main`)."""
    try:
        module = importlib.import_module("agent.cli")
    except ModuleNotFoundError as exc:
        if exc.name not in ("agent", "agent.cli"):
            raise
        print("gamenode: error: the node agent is not part of this installation (no agent.cli)", file=sys.stderr)
        return 1
    agent_main: Callable[[list[str] | None], int] = module.main
    return agent_main(argv)


if __name__ == "__main__":
    sys.exit(main())
