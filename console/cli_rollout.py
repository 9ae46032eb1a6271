"""`gamenode rollout`, `gamenode nodes add` and `gamenode ssh trust`: a running hub's REST API from the shell.

    gamenode rollout (--nodes ID[@HOST[:PORT]],... | --selector SEL | --all-without-agent | --follow ID)
                     [--upgrade | --uninstall] [--parallel N] [--canary K] [--trust-new-host-keys]
                     [--timeout S] [--bundle FILE] [--wheelhouse DIR] [--hub URL]
                     [--ssh-user U] [--identity FILE] [--prefix DIR] [--sudo]
    gamenode nodes add ID --ssh-host H [--ssh-port P] [--ssh-user U] [--identity FILE] [--use-agent]
                     [--jump-host USER@HOST:PORT] [--prefix DIR] [--sudo] [--python PY] [--name N]
                     [--type T] [--label K=V]... [--hub URL]
    gamenode ssh trust NODE [--yes] [--replace] [--hub URL]

The hub is `--hub URL`, else `$GAMENODE_HUB_URL`, else http://127.0.0.1:8080; the API token
`--token`, else `$GAMENODE_TOKEN`, else the local hub's `DATA_DIR/admin.token`. A rollout runs on
the hub; the command follows it (`GET /api/v1/rollouts/{id}` every 0.2 s), printing a line per
host step that changes and the summary table at the end. Exit 0 when every host ended
installed, upgraded, unchanged or removed; 1 when any failed or was rolled back; 130 on Ctrl-C,
after asking the hub to cancel (each host finishes or undoes its current step there).

`--nodes` ids the hub does not know are added first, reached at `@HOST[:PORT]` (default: the id
as host name) with the `--ssh-*` flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from console.cli_auth import add_token_flags, resolve_token
from console.errors import GamenodeError, Unavailable

__all__ = ["DEFAULT_HUB_URL", "POLL_INTERVAL", "HubClient", "HubError", "add_commands"]

DEFAULT_HUB_URL = "http://127.0.0.1:8080"
POLL_INTERVAL = 0.2
"""Seconds between two reads of a rollout being followed."""
FAILED_RESULTS = frozenset({"failed", "rolled_back", "cancelled"})


class HubError(GamenodeError):
    """An error answer of the hub: its code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class HubClient:
    """JSON over HTTP to a hub's REST API (the standard library only)."""

    def __init__(self, url: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "X-Gamenode-Actor": "cli"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._has_token = bool(token)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as exc:
            error = _hub_error(exc)
            if error.status == 401 and not self._has_token:
                error = HubError(error.code, 401, f"the hub at {self.url} needs an API token: pass --token or set "
                                                  "$GAMENODE_TOKEN (on the hub's host, DATA_DIR/admin.token is used "
                                                  "by itself)")
            raise error from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"cannot reach the hub at {self.url}: {reason} (start one with `gamenode hub`, "
                              "or point --hub / GAMENODE_HUB_URL at it)") from None
        return json.loads(text) if text else None


def _hub_error(exc: urllib.error.HTTPError) -> HubError:
    try:
        body = json.loads(exc.read())
        return HubError(str(body.get("error", "error")), exc.code, str(body.get("message", exc.reason)))
    except (ValueError, AttributeError):
        return HubError("error", exc.code, f"the hub answered {exc.code} {exc.reason}")


# --- the parsers --------------------------------------------------------------------


def add_commands(sub: Any) -> None:
    """Add `rollout`, `nodes add` and `ssh trust` to the `gamenode` parser's subcommands."""
    _rollout_parser(sub)
    _nodes_parser(sub)
    _ssh_parser(sub)


def _hub_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", metavar="URL", default=None,
                        help=f"the hub's REST API (default: $GAMENODE_HUB_URL or {DEFAULT_HUB_URL})")
    add_token_flags(parser)


def _ssh_flags(parser: argparse.ArgumentParser, required_host: bool) -> None:
    if required_host:
        parser.add_argument("--ssh-host", required=True, metavar="HOST", help="host name or address of its sshd")
        parser.add_argument("--ssh-port", type=int, default=None, metavar="PORT", help="sshd's port (default 22)")
    parser.add_argument("--ssh-user", default=None, metavar="USER", help="login (default root)")
    parser.add_argument("--identity", default=None, metavar="FILE", help="private key file on the hub's host")
    parser.add_argument("--prefix", default=None, metavar="DIR", help="where the agent lives (default /opt/gamenode)")
    parser.add_argument("--sudo", action="store_true", default=None, help="install with sudo (a non-root user)")


def _rollout_parser(sub: Any) -> None:
    parser = sub.add_parser("rollout", help="install, upgrade or remove the agent on nodes over SSH (via the hub)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--nodes", metavar="ID[@HOST[:PORT]],...", help="these nodes (unknown ones are added)")
    which.add_argument("--selector", metavar="SEL", help="nodes whose labels match, e.g. region=eu")
    which.add_argument("--all-without-agent", action="store_true", help="every node with ssh and no agent online")
    which.add_argument("--follow", metavar="ROLLOUT_ID", help="follow a rollout already started")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--upgrade", action="store_true", help="install or upgrade (the default)")
    action.add_argument("--uninstall", action="store_true", help="stop and remove the agent, revoke its credential")
    parser.add_argument("--parallel", type=int, default=None, metavar="N", help="hosts at once (default 10)")
    parser.add_argument("--canary", type=int, default=None, metavar="K", help="the first K hosts go first")
    parser.add_argument("--trust-new-host-keys", action="store_true", help="trust hosts not in known_hosts yet")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds a new agent has to come online before the host is rolled back (default 120)")
    parser.add_argument("--bundle", default=None, metavar="FILE", help="a prebuilt agent bundle on the hub's host")
    parser.add_argument("--wheelhouse", default=None, metavar="DIR", help="build the bundle offline from these wheels")
    _ssh_flags(parser, required_host=False)
    _hub_flag(parser)
    parser.set_defaults(handler=run_rollout)


def _nodes_parser(sub: Any) -> None:
    nodes = sub.add_parser("nodes", help="manage the hub's nodes")
    nodes_sub = nodes.add_subparsers(dest="nodes_command", required=True, metavar="COMMAND")
    add = nodes_sub.add_parser("add", help="add a node with its SSH access")
    add.add_argument("id", metavar="ID")
    _ssh_flags(add, required_host=True)
    add.add_argument("--use-agent", action="store_true", default=None, help="use the hub's ssh-agent keys")
    add.add_argument("--jump-host", default=None, metavar="USER@HOST:PORT", help="go through this bastion")
    add.add_argument("--python", default=None, metavar="PY", help="the host's python (default python3)")
    add.add_argument("--name", default=None, help="display name (default: the id)")
    add.add_argument("--type", default="physical", choices=("physical", "virtual", "container"))
    add.add_argument("--label", action="append", default=[], metavar="K=V", help="a label (repeatable)")
    _hub_flag(add)
    add.set_defaults(handler=run_nodes_add)


def _ssh_parser(sub: Any) -> None:
    ssh = sub.add_parser("ssh", help="SSH host keys of nodes")
    ssh_sub = ssh.add_subparsers(dest="ssh_command", required=True, metavar="COMMAND")
    trust = ssh_sub.add_parser("trust", help="show a node's host key fingerprint and add it to the hub's known_hosts")
    trust.add_argument("node", metavar="NODE")
    trust.add_argument("--yes", "-y", action="store_true", help="do not ask")
    trust.add_argument("--replace", action="store_true", help="replace a key known_hosts has (a changed key)")
    _hub_flag(trust)
    trust.set_defaults(handler=run_ssh_trust)


def _client(args: argparse.Namespace) -> HubClient:
    url = args.hub or os.environ.get("GAMENODE_HUB_URL") or DEFAULT_HUB_URL
    return HubClient(url, token=resolve_token(args, required=False))


# --- nodes add ----------------------------------------------------------------------


def _ssh_body(args: argparse.Namespace, host: str, port: int | None) -> dict[str, Any]:
    fields = {"host": host, "port": port, "user": args.ssh_user, "identity_file": args.identity,
              "prefix": args.prefix, "sudo": args.sudo, "use_agent": getattr(args, "use_agent", None),
              "jump_host": getattr(args, "jump_host", None), "python": getattr(args, "python", None)}
    if fields["identity_file"]:
        fields["identity_file"] = os.path.abspath(fields["identity_file"])
    return {k: v for k, v in fields.items() if v is not None}


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--label: expected KEY=VALUE (got {pair!r})")
        labels[key] = value
    return labels


def run_nodes_add(args: argparse.Namespace) -> int:
    body = {"id": args.id, "name": args.name or args.id, "type": args.type, "labels": _labels(args.label),
            "ssh": _ssh_body(args, args.ssh_host, args.ssh_port)}
    node = _client(args).post("/api/v1/nodes", body)
    ssh = node.get("ssh") or {}
    print(f"added node {node['id']}: ssh {ssh.get('user')}@{ssh.get('host')}:{ssh.get('port')} "
          f"(prefix {ssh.get('prefix')})", flush=True)
    return 0


# --- ssh trust ----------------------------------------------------------------------


def run_ssh_trust(args: argparse.Namespace) -> int:
    client = _client(args)
    key = client.get(f"/api/v1/nodes/{_quote(args.node)}/ssh/host-key")
    print(f"node {key['node_id']} ({key['host']}:{key['port']}) presents host key {key['fingerprint']} "
          f"({key['verdict']} to the hub)", flush=True)
    if key["verdict"] == "known":
        print("already trusted", flush=True)
        return 0
    if not args.yes and input("trust this key? [y/N] ").strip().lower() not in ("y", "yes"):
        print("not trusted", file=sys.stderr)
        return 1
    body = {"fingerprint": key["fingerprint"], "replace": args.replace}
    trusted = client.post(f"/api/v1/nodes/{_quote(args.node)}/ssh/trust", body)
    print(f"trusted {trusted['fingerprint']} for {trusted['host']}:{trusted['port']}", flush=True)
    return 0


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


# --- rollout ------------------------------------------------------------------------


def run_rollout(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    client = _client(args)
    if args.follow:
        record = client.get(f"/api/v1/rollouts/{_quote(args.follow)}")
    else:
        record = client.post("/api/v1/rollouts", _rollout_body(args, client))
        print(f"rollout {record['id']} ({record['action']}) of {len(record['hosts'])} host(s) on {client.url}",
              flush=True)
    try:
        record = follow(client, record, sleep)
    except KeyboardInterrupt:
        client.post(f"/api/v1/rollouts/{_quote(record['id'])}/cancel")
        print(f"\ninterrupted: asked the hub to cancel rollout {record['id']}; each host finishes or undoes its "
              f"current step there (follow it with `gamenode rollout --follow {record['id']}`)", file=sys.stderr)
        return 130
    print(summary(record), flush=True)
    return 0 if rollout_succeeded(record) else 1


def _rollout_body(args: argparse.Namespace, client: HubClient) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "uninstall" if args.uninstall else "install",
                            "trust_new_host_keys": args.trust_new_host_keys}
    if args.nodes:
        body["nodes"] = _ensure_nodes(args, client)
    elif args.selector:
        body["selector"] = args.selector
    else:
        body["all_without_agent"] = True
    for name in ("parallel", "canary", "timeout", "bundle", "wheelhouse"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    for name in ("bundle", "wheelhouse"):
        if name in body:
            body[name] = os.path.abspath(body[name])
    return body


def _ensure_nodes(args: argparse.Namespace, client: HubClient) -> list[str]:
    """The ids of `--nodes ID[@HOST[:PORT]],...`, adding the ones the hub does not know."""
    ids = []
    for spec in (s.strip() for s in args.nodes.split(",")):
        if not spec:
            continue
        node_id, _, where = spec.partition("@")
        host, _, port = where.rpartition(":") if ":" in where else (where, "", "")
        ids.append(node_id)
        try:
            client.get(f"/api/v1/nodes/{_quote(node_id)}")
        except HubError as exc:
            if exc.status != 404:
                raise
            ssh = _ssh_body(args, host or node_id, int(port) if port.isdigit() else None)
            client.post("/api/v1/nodes", {"id": node_id, "name": node_id, "type": "physical", "ssh": ssh})
            print(f"added node {node_id} (ssh {ssh['host']}:{ssh.get('port', 22)})", flush=True)
    return ids


def follow(client: HubClient, record: dict[str, Any], sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Read the rollout until it has finished, printing what changed; the final record."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    results: dict[str, str] = {}
    while True:
        for line in progress_lines(record, seen, results):
            print(line, flush=True)
        if record["state"] in ("succeeded", "failed", "cancelled"):
            if record.get("error"):
                print(f"rollout {record['id']} failed: {record['error']}", file=sys.stderr)
            return record
        sleep(POLL_INTERVAL)
        record = client.get(f"/api/v1/rollouts/{_quote(record['id'])}")


def progress_lines(
    record: dict[str, Any], seen: dict[tuple[str, str], tuple[str, str]], results: dict[str, str]
) -> list[str]:
    """A line per host step whose state changed since `seen`, and per host that got its result."""
    lines = []
    for host in record["hosts"]:
        node = host["node_id"]
        for step in host["steps"]:
            now = (step["state"], step.get("message", ""))
            if step["state"] != "pending" and seen.get((node, step["name"])) != now:
                message = f": {step['message']}" if step.get("message") else ""
                lines.append(f"{node:<16} {step['name']:<10} {step['state']}{message}")
            seen[(node, step["name"])] = now
        if host.get("result") and results.get(node) != host["result"]:
            results[node] = host["result"]
            error = f": {host['error']}" if host.get("error") else ""
            lines.append(f"{node:<16} {'result':<10} {host['result']} ({host.get('duration_s', 0):.1f}s){error}")
    return lines


def rollout_succeeded(record: dict[str, Any]) -> bool:
    return record["state"] == "succeeded" and not any(h.get("result") in FAILED_RESULTS for h in record["hosts"])


def summary(record: dict[str, Any]) -> str:
    """The bootstrap's summary table (host, from, to, result, time) of the rollout's hosts."""
    from bootstrap import HostReport, HostResult, StepReport, StepState, summary_table

    reports = [
        HostReport(
            node_id=h["node_id"], host=h["host"], from_version=h.get("from_version"),
            to_version=h.get("to_version"), result=HostResult(h["result"]) if h.get("result") else None,
            error=h.get("error", ""), duration=float(h.get("duration_s", 0.0)),
            steps=[StepReport(name=s["name"], state=StepState(s["state"]), message=s.get("message", ""))
                   for s in h["steps"]],
        )
        for h in record["hosts"]
    ]
    table: str = summary_table(reports)
    return table
