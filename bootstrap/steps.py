"""The per-host steps of a rollout, on a real host over SSH (`RemoteHost`), and what they need to know.

`Rollout` (rollout.py) decides which steps run and in what order; a `HostOps`
does them. Each step is one command on the host (see scripts.py). Layout under
the node's prefix, PREFIX:

    agent/<version>/          venv + the bundle's site-packages; VERSION, BUNDLE (its sha256)
    agent/current, previous   symlinks to a <version>
    bundles/<sha256>.tar.gz   uploaded bundles
    etc/agent.env, etc/token  0600; the agent reads GAMENODE_AGENT_* from agent.env; token: its join token
    etc/ca.pem                0644; the hub's CA, which the agent pins (absent for an --insecure hub)
    state/ log/ run/          the agent's state dir (its key and certificate in state/identity/), logs, pid files

Only a join token and the CA's certificate travel: the agent makes its key on
the host and exchanges the token for its certificate itself. A new token is
issued (through `token_provider`) for a host whose agent has no token or no
certificate yet.
    bin/gamenode-supervise    the supervisor, on hosts without systemd
"""

from __future__ import annotations

import hashlib
import shlex
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Protocol

from bootstrap import scripts
from bootstrap.errors import BootstrapError
from bootstrap.known_hosts import KnownHosts
from bootstrap.ssh import HostConnection, connect

if TYPE_CHECKING:
    import logging

    from bootstrap.bundle import Bundle
    from bootstrap.rollout import HostTarget, RolloutOptions

__all__ = ["MIN_PYTHON", "Facts", "HostOps", "RemoteHost", "agent_env", "supervisor_script", "unit_file"]

MIN_PYTHON = (3, 9)


@dataclass(frozen=True, slots=True)
class Facts:
    """What preflight found on a host, plus what it means for this bundle and config."""

    os: str = ""
    arch: str = ""
    python: str | None = None
    """`X.Y` of the host's python, None when it did not run."""
    has_venv: bool = False
    free_bytes: int = 0
    docker: bool = False
    skew: float = 0.0
    """Host clock minus ours, seconds."""
    systemd: bool = False
    version: str | None = None
    """The agent version `current` points to; None: no agent."""
    previous: str | None = None
    running: bool = False
    bundle_current: bool = False
    """`current` holds exactly this bundle (same sha256)."""
    bundle_installed: bool = False
    """PREFIX/agent/<bundle version> holds exactly this bundle."""
    bundle_uploaded: bool = False
    config_current: bool = False
    """agent.env, the CA (and the token, where one is given) already hold what configure would write."""
    supervisor_current: bool = False
    token_present: bool = False
    enrolled: bool = False
    """The agent's state dir holds a certificate (it joined the hub)."""
    notes: tuple[str, ...] = field(default=())
    """Warnings worth showing (time skew, no docker)."""


class HostOps(Protocol):
    """The steps on one host; `Rollout` calls them in order (fakes implement this in tests)."""

    async def connect(self) -> str: ...
    async def preflight(self) -> Facts: ...
    def check(self, facts: Facts) -> None:
        """`BootstrapError` when the host cannot take the bundle."""
    async def upload(self) -> str: ...
    async def install(self) -> str: ...
    async def configure(self) -> str: ...
    async def switch(self) -> str: ...
    async def start(self) -> str: ...
    async def rollback(self) -> str:
        """`current` back to `previous` and restart; returns the version now current."""
    async def stop(self) -> str | None:
        """Stop the agent (for uninstall, or after a failed fresh install); returns the version found, if any."""
    async def remove(self) -> str: ...
    async def close(self) -> None: ...


def unit_file(prefix: str, *, description: str = "gamenode agent") -> str:
    """The systemd unit for the agent under `prefix` (`systemd-analyze verify` clean)."""
    return f"""[Unit]
Description={description}
Documentation=https://github.com/gamenode/gamenode
Wants=network-online.target
After=network-online.target docker.service

[Service]
Type=simple
EnvironmentFile={prefix}/etc/agent.env
WorkingDirectory={prefix}
ExecStart={prefix}/agent/current/bin/python -m agent
Restart=always
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=15
StandardOutput=append:{prefix}/log/agent.log
StandardError=inherit

[Install]
WantedBy=multi-user.target
"""


def supervisor_script() -> str:
    """The text of `PREFIX/bin/gamenode-supervise` (bootstrap/supervise.sh)."""
    return resources.files("bootstrap").joinpath("supervise.sh").read_text(encoding="utf-8")


def agent_env(prefix: str, node_id: str, hub: str, *, ca_file: str | None = None, insecure: bool = False) -> str:
    """The content of PREFIX/etc/agent.env (read by the supervisor's `.` and by systemd's EnvironmentFile)."""
    values = {"GAMENODE_AGENT_HUB": hub, "GAMENODE_AGENT_NODE_ID": node_id,
              "GAMENODE_AGENT_TOKEN": f"@{prefix}/etc/token", "GAMENODE_AGENT_STATE_DIR": f"{prefix}/state"}
    if ca_file:
        values["GAMENODE_AGENT_CA_FILE"] = ca_file
    if insecure:
        values["GAMENODE_AGENT_INSECURE"] = "1"
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parse(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


class RemoteHost:
    """`HostOps` over one SSH connection (`bootstrap.ssh`)."""

    def __init__(self, target: HostTarget, options: RolloutOptions, log: logging.LoggerAdapter,  # type: ignore[type-arg]
                 ) -> None:
        self.target, self.options, self.log = target, options, log
        self.prefix = scripts.check_prefix(target.ssh.prefix)
        self._conn: HostConnection | None = None
        self._facts = Facts()

    @property
    def conn(self) -> HostConnection:
        if self._conn is None:
            raise BootstrapError("not connected")
        return self._conn

    @property
    def bundle(self) -> Bundle:
        if self.options.bundle is None:
            raise BootstrapError("no bundle to install")
        return self.options.bundle

    async def _sh(self, script: str) -> str:
        result = await self.conn.run("sh -s", input=script, timeout=self.options.step_timeout)
        return result.stdout

    async def connect(self) -> str:
        self._conn = await connect(self.target.ssh, KnownHosts(self.options.known_hosts),
                                   trust_new=self.options.trust_new_host_keys, timeout=self.options.connect_timeout,
                                   node=self.target.node_id)
        return f"{self.target.ssh.user}@{self.conn.where}"

    async def preflight(self) -> Facts:
        bundle = self.options.bundle
        sent = time.time()
        version, sha = (bundle.version, bundle.sha256) if bundle else ("-", "-")
        out = await self._sh(scripts.preflight_script(self.prefix, self.target.ssh.python, version, sha))
        facts = self._facts = self._facts_from(_parse(out), (sent + time.time()) / 2)
        return facts

    def _facts_from(self, raw: dict[str, str], now: float) -> Facts:
        bundle = self.options.bundle
        sha = bundle.sha256 if bundle else "-"
        skew = float(raw["time"]) - now if "time" in raw else 0.0
        notes = [f"clock {skew:+.1f} s off"] if abs(skew) > 2 else []
        if raw.get("docker") != "1":
            notes.append("docker not reachable")
        return Facts(
            os=raw.get("os", ""), arch=raw.get("arch", ""), python=raw.get("python"), has_venv=raw.get("venv") == "1",
            free_bytes=int(raw.get("free", "0")), docker=raw.get("docker") == "1", skew=skew,
            systemd=raw.get("systemd") == "1", version=raw.get("version"), previous=raw.get("previous"),
            running=raw.get("running") == "1", bundle_current=raw.get("current_sha") == sha,
            bundle_installed=raw.get("installed_sha") == sha,
            bundle_uploaded=bundle is not None and raw.get("bundle_size", "").strip() == str(bundle.size),
            config_current=self._config_current(raw), token_present="token_sha" in raw,
            enrolled=raw.get("enrolled") == "1",
            supervisor_current=raw.get("supervisor_sha") == _sha(supervisor_script()), notes=tuple(notes))

    def _config_current(self, raw: dict[str, str]) -> bool:
        if raw.get("config_sha") != _sha(self._env()):
            return False
        ca = self.target.ca_pem
        if ca is not None and raw.get("ca_sha") != _sha(ca.decode()):
            return False
        token = self.target.token_provider
        if isinstance(token, str):
            return raw.get("token_sha") == _sha(_token_line(token))
        return "token_sha" in raw and raw.get("enrolled") == "1"

    def _env(self) -> str:
        insecure = self.target.ca_pem is None
        return agent_env(self.prefix, self.target.node_id, self.target.hub_address,
                         ca_file=None if insecure else f"{self.prefix}/{scripts.CA_PATH}", insecure=insecure)

    def check(self, facts: Facts) -> None:
        """`BootstrapError` when the host cannot take this bundle (OS, python, venv, arch, disk)."""
        bundle = self.bundle
        if facts.os != "Linux":
            raise BootstrapError(f"unsupported OS {facts.os or '?'} (Linux only)")
        if facts.python is None:
            raise BootstrapError(f"{self.target.ssh.python} did not run on the host (python3 >= 3.9 needed)")
        if tuple(int(p) for p in facts.python.split(".")) < MIN_PYTHON or not facts.has_venv:
            raise BootstrapError(f"python {facts.python}{'' if facts.has_venv else ' without venv'}: python3 >= 3.9 "
                                 "with the venv module needed")
        if (facts.python, facts.arch) != (bundle.python, bundle.platform):
            raise BootstrapError(f"the bundle is for python {bundle.python} on {bundle.platform}, the host has "
                                 f"python {facts.python} on {facts.arch}: build one for it")
        need = 0 if facts.bundle_installed else bundle.size * (1 if facts.bundle_uploaded else 2) * 3
        if facts.free_bytes < need:
            raise BootstrapError(f"{facts.free_bytes >> 20} MiB free under {self.prefix}, {need >> 20} MiB needed")

    async def upload(self) -> str:
        await self.conn.put(self.bundle.archive, f"{self.prefix}/bundles/{self.bundle.sha256}.tar.gz")
        return f"{self.bundle.size >> 10} KiB"

    async def install(self) -> str:
        bundle = self.bundle
        out = await self._sh(scripts.install_script(self.prefix, self.target.ssh.python, bundle.version,
                                                    bundle.sha256, bundle.python))
        return out.strip().splitlines()[-1] if out.strip() else ""

    async def configure(self) -> str:
        """agent.env, the hub's CA, and the join token: the given one, or a new one from the hub when the host has
        none or its agent has not joined yet (issuing one revokes the node's earlier token and certificate)."""
        files = {"etc/agent.env": self._env()}
        public: set[str] = set()
        if self.target.ca_pem is not None:
            files[scripts.CA_PATH] = self.target.ca_pem.decode()
            public.add(scripts.CA_PATH)
        token = self.target.token_provider
        if isinstance(token, str):
            files["etc/token"] = _token_line(token)
        elif not (self._facts.token_present and self._facts.enrolled):
            files["etc/token"] = _token_line(await token(self.target.node_id))
        await self._sh(scripts.configure_script(self.prefix, files, public))
        return "wrote " + ", ".join(sorted(files))

    async def switch(self) -> str:
        return (await self._sh(scripts.switch_script(self.prefix, self.bundle.version))).strip()

    async def start(self) -> str:
        if self._facts.systemd:
            await self.conn.write_file(scripts.UNIT_PATH, unit_file(self.prefix), 0o644)
        elif not self._facts.supervisor_current:
            await self.conn.write_file(f"{self.prefix}/{scripts.SUPERVISOR}", supervisor_script(), 0o755)
        await self._sh(scripts.start_script(self.prefix, self._facts.systemd))
        return "systemd" if self._facts.systemd else "supervisor"

    async def rollback(self) -> str:
        version = (await self._sh(scripts.rollback_script(self.prefix))).strip()
        await self._sh(scripts.start_script(self.prefix, self._facts.systemd))
        return version

    async def stop(self) -> str | None:
        return _parse(await self._sh(scripts.stop_script(self.prefix))).get("version")

    async def remove(self) -> str:
        await self._sh(scripts.remove_script(self.prefix))
        return f"removed {self.prefix}"

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def _token_line(token: str) -> str:
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise BootstrapError("the node's join token is empty or contains whitespace")
    return token + "\n"
