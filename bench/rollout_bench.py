"""Rollout bench: `gamenode rollout` vs `ansible-playbook` installing the agent on N private sshd hosts.

    python bench/rollout_bench.py [--hosts 10] [--no-ansible] [--ansible-venv /tmp/gamenode-bench-ansible]

Needs OpenSSH's sshd (Debian openssh-server) and, once, PyPI: for the agent's dependency wheels (cached in
--cache) and for ansible-core, installed on first use into its own venv (not a project dependency).

It starts a hub and N private `sshd` "hosts" on 127.0.0.1 (tests/testbed/sshd.py), builds two agent bundles
from one local wheelhouse (the checkout, and the checkout with its version bumped), and times three passes
for each tool, each tool on its own prefix on every host and its own nodes:

1. first install,  2. a second run with nothing to do,  3. an upgrade to the bumped build.

- gamenode: `POST /api/v1/rollouts` with the bundle, until the rollout has finished (its verify step waits
  until the hub sees every node online on the new version);
- Ansible: bench/rollout/playbook.yml, the same steps (directories, upload the same archive, venv, extract,
  `current` link, 0600 config and token, start with setsid, wait until the hub sees the node on the
  version), first with Ansible's defaults (forks 5), then with forks 10 and pipelining.

Prints the times, the ratios (targets: first install >= 2x, no-op >= 20x, upgrade >= 3x faster than
Ansible's defaults) and what one host alone takes with gamenode (the floor: all hosts share this machine's
cores). Each tool's agents are stopped before the next tool runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))

from _procs import REPO_ROOT, Hub, start_hub
from testbed.sshd import (
    AgentBuild,
    ClientKey,
    SshHost,
    build_variant,
    copy_source,
    host_python,
    host_python_version,
    kill_prefix_processes,
    known_hosts_for,
    make_client_key,
    sshd_missing,
    start_sshd,
    stop_sshd,
)

PLAYBOOK = Path(__file__).resolve().parent / "rollout" / "playbook.yml"
PASSES = ("first install", "no-op rerun", "upgrade")
TARGETS = {"first install": 2.0, "no-op rerun": 20.0, "upgrade": 3.0}
ROLLOUT_TIMEOUT = 600.0


@dataclass
class Bench:
    root: Path
    hub: Hub
    api: httpx.Client
    hosts: list[SshHost]
    key: ClientKey
    known_hosts: Path
    builds: tuple[AgentBuild, AgentBuild]

    def prefix(self, host: SshHost, tool: str) -> Path:
        return host.root / f"{tool}-gamenode"  # the rollout wants "gamenode" in a prefix's last part

    def create_nodes(self, tool: str, hosts: Sequence[SshHost], ssh: bool) -> list[str]:
        ids = []
        for index, host in enumerate(hosts):
            node_id = f"bench-{tool}-{index}"
            body: dict[str, Any] = {"id": node_id, "name": node_id, "type": "physical"}
            if ssh:
                body["ssh"] = {"host": host.address, "port": host.port, "user": host.user,
                               "identity_file": str(self.key.private), "prefix": str(self.prefix(host, tool)),
                               "python": host_python()}
            r = self.api.post("/api/v1/nodes", json=body)
            r.raise_for_status()
            ids.append(node_id)
        return ids

    def token(self, node_id: str) -> str:
        r = self.api.post(f"/api/v1/nodes/{node_id}/token")
        r.raise_for_status()
        return str(r.json()["token"])

    def stop_agents(self, tool: str) -> None:
        for host in self.hosts:
            kill_prefix_processes(self.prefix(host, tool))


# --- gamenode ------------------------------------------------------------------------------


def gamenode_pass(bench: Bench, nodes: list[str], build: AgentBuild, expect: set[str]) -> float:
    """One rollout over REST until it has finished; its wall time."""
    started = time.perf_counter()
    r = bench.api.post("/api/v1/rollouts", json={"nodes": nodes, "bundle": str(build.bundle.archive),
                                                 "parallel": max(10, len(nodes))})
    r.raise_for_status()
    rollout_id = r.json()["id"]
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    while True:
        record = bench.api.get(f"/api/v1/rollouts/{rollout_id}").json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"rollout {rollout_id} still {record['state']} after {ROLLOUT_TIMEOUT:g}s")
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    results = {h["node_id"]: h["result"] for h in record["hosts"]}
    if record["state"] != "succeeded" or set(results.values()) - expect:
        errors = {h["node_id"]: h["error"] for h in record["hosts"] if h["error"]}
        raise RuntimeError(f"gamenode rollout {rollout_id} {record['state']}: {results} {errors} {record['error']}")
    return elapsed


def gamenode_passes(bench: Bench, tool: str, hosts: Sequence[SshHost]) -> list[float]:
    nodes = bench.create_nodes(tool, hosts, ssh=True)
    current, newer = bench.builds
    return [gamenode_pass(bench, nodes, current, {"installed"}),
            gamenode_pass(bench, nodes, current, {"unchanged"}),
            gamenode_pass(bench, nodes, newer, {"upgraded"})]


# --- ansible -------------------------------------------------------------------------------


def ensure_ansible(venv: Path) -> Path:
    """`ansible-playbook` from a venv of its own, with ansible-core installed there on first use."""
    playbook = venv / "bin" / "ansible-playbook"
    if playbook.is_file():
        return playbook
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    print(f"installing ansible-core into {venv} (first use) ...", flush=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "ansible-core"],
                   check=True)
    return playbook


def write_inventory(bench: Bench, tool: str, nodes: list[str], path: Path) -> None:
    lines = ["[fleet]"]
    for index, (host, node_id) in enumerate(zip(bench.hosts, nodes, strict=True)):
        lines.append(f"host{index} ansible_port={host.port} prefix={bench.prefix(host, tool)} node_id={node_id} "
                     f"token={bench.token(node_id)}")
    common = f"-o UserKnownHostsFile={bench.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
    lines += ["", "[fleet:vars]", "ansible_host=127.0.0.1", f"ansible_user={bench.hosts[0].user}",
              f"ansible_ssh_private_key_file={bench.key.private}", f"ansible_ssh_common_args={common}",
              "ansible_python_interpreter=/usr/bin/python3", f"python={host_python()}",
              f"hub_grpc={bench.hub.grpc}", f"hub_ca={bench.hub.ca_file}",
              f"hub_token={bench.hub.headers['Authorization'].removeprefix('Bearer ')}", ""]
    path.write_text("\n".join(lines))


def ansible_pass(bench: Bench, playbook_bin: Path, inventory: Path, build: AgentBuild, env: dict[str, str],
                 log: Path) -> float:
    extra = {"bundle": str(build.bundle.archive), "bundle_sha256": build.bundle.sha256, "version": build.version,
             "pyver": host_python_version(), "hub_url": bench.hub.url}
    command = [str(playbook_bin), "-i", str(inventory), str(PLAYBOOK)]
    for name, value in extra.items():
        command += ["-e", f"{name}={value}"]
    started = time.perf_counter()
    with log.open("ab") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed ({done.returncode}); its output: {log}")
    return elapsed


def ansible_passes(bench: Bench, tool: str, playbook_bin: Path, settings: dict[str, str]) -> list[float]:
    nodes = bench.create_nodes(tool, bench.hosts, ssh=False)
    inventory = bench.root / f"{tool}.ini"
    write_inventory(bench, tool, nodes, inventory)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GAMENODE_"))}
    env.update({"ANSIBLE_LOCAL_TEMP": str(bench.root / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_RETRY_FILES_ENABLED": "False", **settings})
    log = bench.root / f"{tool}.log"
    current, newer = bench.builds
    return [ansible_pass(bench, playbook_bin, inventory, build, env, log) for build in (current, current, newer)]


# --- setup and report ----------------------------------------------------------------------


def build_bundles(cache: Path, work: Path) -> tuple[AgentBuild, AgentBuild]:
    """The checkout's bundle and a bumped one, both from one local wheelhouse (downloaded once into `cache`)."""
    from bootstrap.bundle import read_version

    current = build_variant("current", REPO_ROOT, cache)
    newer_source = copy_source(work / "newer", f"{read_version(REPO_ROOT)}.post1")
    return current, build_variant("newer", newer_source, cache, current.wheelhouse)


def timed(label: str, fn: Callable[[], list[float]]) -> list[float]:
    print(f"{label} ...", flush=True)
    times = fn()
    print("  " + ", ".join(f"{name} {t:.2f}s" for name, t in zip(PASSES, times, strict=True)), flush=True)
    return times


def report(n: int, results: dict[str, list[float]], solo: list[float]) -> str:
    ours = results["gamenode"]
    others = [name for name in results if name != "gamenode"]
    header = f"{'pass':<15}{'gamenode':>10}" + "".join(f"{name:>26}{'ratio':>8}" for name in others) + \
        f"{'target':>9}{'1 host':>9}"
    lines = [f"rollout bench: {n} hosts", header]
    for index, name in enumerate(PASSES):
        row = f"{name:<15}{ours[index]:>9.2f}s"
        for other in others:
            theirs = results[other][index]
            row += f"{theirs:>25.2f}s{theirs / ours[index]:>7.1f}x"
        row += f"{'>= ' + format(TARGETS[name], 'g') + 'x':>9}{solo[index]:>8.2f}s"
        lines.append(row)
    lines.append("ratio = Ansible's time / gamenode's; '1 host': gamenode on one host alone (the floor)")
    return "\n".join(lines)


def start_hosts(root: Path, count: int, key: ClientKey) -> list[SshHost]:
    return [start_sshd(root / f"host{i}", f"host{i}", key.public) for i in range(count)]


def run(args: argparse.Namespace, root: Path) -> None:
    reason = sshd_missing()
    if reason:
        raise SystemExit(f"rollout bench: {reason}")
    print("building the agent bundles ...", flush=True)
    builds = build_bundles(args.cache, root / "builds")
    print(f"  {builds[0].version} and {builds[1].version}: {builds[0].bundle.size / 2**20:.1f} MiB each", flush=True)
    key = make_client_key(root / "client")
    hosts = start_hosts(root, args.hosts + 1, key)
    solo_host, hosts = hosts[0], hosts[1:]
    data_dir = root / "hub"
    data_dir.mkdir()
    known_hosts = data_dir / "known_hosts"
    known_hosts.write_text(known_hosts_for([solo_host, *hosts]))
    hub = start_hub(data_dir)
    api = httpx.Client(base_url=hub.url, timeout=60.0, headers=hub.headers)
    bench = Bench(root, hub, api, hosts, key, known_hosts, builds)
    try:
        measure(bench, args, solo_host)
    finally:
        for tool in ("gamenode", "solo", "ansible", "ansible-tuned"):
            bench.stop_agents(tool)
            kill_prefix_processes(bench.prefix(solo_host, tool))
        api.close()
        hub.stop()
        for host in [solo_host, *hosts]:
            stop_sshd(host)


def measure(bench: Bench, args: argparse.Namespace, solo_host: SshHost) -> None:
    solo = timed("gamenode, one host alone", lambda: gamenode_passes(bench, "solo", [solo_host]))
    kill_prefix_processes(bench.prefix(solo_host, "solo"))
    results = {"gamenode": timed(f"gamenode, {len(bench.hosts)} hosts",
                                 lambda: gamenode_passes(bench, "gamenode", bench.hosts))}
    bench.stop_agents("gamenode")
    if not args.no_ansible:
        playbook_bin = ensure_ansible(args.ansible_venv)
        results["ansible (defaults)"] = timed("ansible-playbook, defaults (forks 5)",
                                              lambda: ansible_passes(bench, "ansible", playbook_bin, {}))
        bench.stop_agents("ansible")
        tuned = {"ANSIBLE_FORKS": "10", "ANSIBLE_PIPELINING": "True"}
        results["ansible (forks10+pipe)"] = timed("ansible-playbook, forks 10 + pipelining",
                                                  lambda: ansible_passes(bench, "ansible-tuned", playbook_bin, tuned))
        bench.stop_agents("ansible-tuned")
    print()
    print(report(len(bench.hosts), results, solo))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--no-ansible", action="store_true", help="time gamenode only")
    parser.add_argument("--ansible-venv", type=Path, default=Path(tempfile.gettempdir()) / "gamenode-bench-ansible")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gamenode-bench-cache",
                        help="where the dependency wheels and bundles are kept between runs")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, inventories)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="gamenode-rollout-bench-"))
    try:
        run(args, root)
    finally:
        if args.keep:
            print(f"work dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
