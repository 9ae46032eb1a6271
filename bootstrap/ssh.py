"""One verified SSH connection per host: commands (optionally under sudo) and SFTP uploads.

Host keys are checked against the hub's own known_hosts (`KnownHosts`), never
`~/.ssh/known_hosts`: asyncssh gets the keys filed for the host (so it prefers
their algorithms) and asks `_VerifyingClient.validate_host_public_key` about any
other key, which trusts it only with `trust_new` and otherwise records why it was
refused. A jump host (`user@host:port`) is verified the same way. Channels are
multiplexed on the one connection, at most `MAX_CHANNELS` at once (sshd's
MaxSessions is 10).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from bootstrap.errors import BootstrapError, HostKeyError
from bootstrap.known_hosts import KnownHosts, Verdict, fingerprint
from console.models import SshAccess

__all__ = ["MAX_CHANNELS", "CommandResult", "HostConnection", "connect", "host_logger", "parse_jump_host",
           "scan_host_key"]

MAX_CHANNELS = 8
SFTP_BLOCK_SIZE = -1
"""-1: the server's own limit (OpenSSH: 255 KiB via limits@openssh.com), the largest it takes."""
SFTP_MAX_REQUESTS = 64

_JUMP = re.compile(r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>[^@\s:]+)(?::(?P<port>[0-9]{1,5}))?$")


class _HostAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['host'] if self.extra else '?'}] {msg}", kwargs


def host_logger(name: str) -> logging.LoggerAdapter:  # type: ignore[type-arg]
    """A child of `bootstrap.host` that puts `[name]` in front of every line."""
    return _HostAdapter(logging.getLogger("bootstrap.host"), {"host": name})


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


def parse_jump_host(value: str, default_user: str) -> tuple[str, str, int]:
    """`user@host:port` (user and port optional) → (user, host, port)."""
    match = _JUMP.match(value.strip())
    if not match:
        raise BootstrapError(f"jump host: expected user@host:port (got {value!r})")
    return match["user"] or default_user, match["host"], int(match["port"] or 22)


class _VerifyingClient(asyncssh.SSHClient):
    """Accepts a key the known_hosts does not hold only with `trust_new`; remembers why it refused."""

    def __init__(self, known_hosts: KnownHosts, host: str, port: int, trust_new: bool) -> None:
        self._known_hosts, self._host, self._port, self._trust_new = known_hosts, host, port, trust_new
        self.refused: tuple[Verdict, str] | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        verdict = self._known_hosts.check(self._host, self._port, key)
        if verdict == "known":
            return True
        if verdict == "unknown" and self._trust_new:
            self._known_hosts.trust(self._host, self._port, key)
            return True
        self.refused = (verdict, fingerprint(key))
        return False


async def _open(known_hosts: KnownHosts, host: str, port: int, user: str, *, trust_new: bool, timeout: float,
                keys: dict[str, Any], tunnel: asyncssh.SSHClientConnection | None, node: str | None,
                ) -> asyncssh.SSHClientConnection:
    client = _VerifyingClient(known_hosts, host, port, trust_new)
    filed = [asyncssh.import_public_key(f"{t} {_b64(b)}") for t, b in known_hosts.keys_for(host, port)]
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client, host, port, username=user, known_hosts=(filed, [], []), tunnel=tunnel,
            connect_timeout=timeout, login_timeout=timeout, keepalive_interval=10, keepalive_count_max=3,
            config=None, **keys)
    except asyncssh.HostKeyNotVerifiable:
        verdict, seen = client.refused or ("changed", "?")
        raise HostKeyError(host, port, "unknown" if verdict == "unknown" else "changed", seen,
                           known_hosts.known_fingerprints(host, port), node) from None
    except asyncssh.PermissionDenied:
        raise BootstrapError(f"{host}:{port}: permission denied for user {user!r} (check the identity file, "
                             "the ssh-agent and the host's authorized_keys)") from None
    except (TimeoutError, asyncssh.misc.ConnectionLost) as exc:
        raise BootstrapError(f"{host}:{port}: no SSH answer within {timeout:g} s ({exc or 'timed out'})") from None
    except (OSError, asyncssh.Error) as exc:
        raise BootstrapError(f"cannot connect to {host}:{port}: {exc}") from None
    return conn


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode()


def _key_options(access: SshAccess) -> dict[str, Any]:
    if access.identity_file:
        path = Path(access.identity_file).expanduser()
        if not path.is_file():
            raise BootstrapError(f"identity file {path} not found")
        return {"client_keys": [str(path)], "agent_path": () if access.use_agent else None}
    if access.use_agent:
        return {"client_keys": None}
    return {}


async def connect(access: SshAccess, known_hosts: KnownHosts, *, trust_new: bool = False, timeout: float = 10,
                  node: str | None = None) -> HostConnection:
    """The verified connection to `access` (through its jump host, if any); `BootstrapError` when it fails."""
    keys = _key_options(access)
    jump = None
    if access.jump_host:
        juser, jhost, jport = parse_jump_host(access.jump_host, access.user)
        jump = await _open(known_hosts, jhost, jport, juser, trust_new=trust_new, timeout=timeout, keys=keys,
                           tunnel=None, node=node)
    try:
        conn = await _open(known_hosts, access.host, access.port, access.user, trust_new=trust_new,
                           timeout=timeout, keys=keys, tunnel=jump, node=node)
    except BaseException:
        if jump is not None:
            jump.close()
        raise
    return HostConnection(conn, access, jump=jump, log=host_logger(node or f"{access.host}:{access.port}"))


async def scan_host_key(access: SshAccess, known_hosts: KnownHosts, *, timeout: float = 10) -> asyncssh.SSHKey:
    """The key the host presents now, without logging in (for `gamenode ssh trust`); a jump host must be known."""
    jump = None
    if access.jump_host:
        juser, jhost, jport = parse_jump_host(access.jump_host, access.user)
        jump = await _open(known_hosts, jhost, jport, juser, trust_new=False, timeout=timeout,
                           keys=_key_options(access), tunnel=None, node=None)
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(access.host, access.port, tunnel=jump if jump is not None else ()), timeout)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise BootstrapError(f"cannot read the host key of {access.host}:{access.port}: {exc or 'timed out'}") from None
    finally:
        if jump is not None:
            jump.close()
    if key is None:
        raise BootstrapError(f"{access.host}:{access.port} presented no host key")
    return key


class HostConnection:
    """Commands and uploads on one host over one SSH connection."""

    def __init__(self, conn: asyncssh.SSHClientConnection, access: SshAccess, *,
                 jump: asyncssh.SSHClientConnection | None = None, log: logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
                 ) -> None:
        self._conn, self._jump, self.access = conn, jump, access
        self.log = log or host_logger(f"{access.host}:{access.port}")
        self._channels = asyncio.Semaphore(MAX_CHANNELS)
        self._sudo = access.sudo and access.user != "root"

    @property
    def where(self) -> str:
        return f"{self.access.host}:{self.access.port}"

    def _wrap(self, command: str) -> str:
        return f"sudo -n sh -c {shlex.quote(command)}" if self._sudo else command

    async def run(self, command: str, *, check: bool = True, input: str | None = None,
                  timeout: float | None = None) -> CommandResult:
        """Run a shell command (under `sudo -n` when the access says so); `BootstrapError` on a non-zero exit."""
        async with self._channels:
            try:
                done = await self._conn.run(self._wrap(command), input=input, check=False, timeout=timeout)
            except asyncssh.TimeoutError:
                raise BootstrapError(f"{self.where}: a command ran past {timeout:g} s") from None
            except (OSError, asyncssh.Error) as exc:
                raise BootstrapError(f"{self.where}: {exc}") from None
        result = CommandResult(done.exit_status if done.exit_status is not None else -1,
                               _text(done.stdout), _text(done.stderr))
        if check and result.exit_status != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise BootstrapError(f"{self.where}: exit {result.exit_status}: {' | '.join(detail) or command[:80]}")
        return result

    async def put(self, local: Path, remote: str) -> None:
        """Upload a file to `remote` (written as `remote.part`, then renamed), with large SFTP blocks."""
        staged = f"/tmp/.gamenode-upload-{uuid.uuid4().hex}" if self._sudo else f"{remote}.part"
        async with self._channels:
            try:
                async with self._conn.start_sftp_client() as sftp:
                    if not self._sudo:
                        await sftp.makedirs(str(Path(remote).parent), exist_ok=True)
                    await sftp.put(str(local), staged, block_size=SFTP_BLOCK_SIZE, max_requests=SFTP_MAX_REQUESTS)
            except (OSError, asyncssh.Error) as exc:
                raise BootstrapError(f"{self.where}: upload of {local.name} failed: {exc}") from None
        parent = shlex.quote(str(Path(remote).parent))
        await self.run(f"mkdir -p {parent} && mv -f {shlex.quote(staged)} {shlex.quote(remote)}")

    async def write_file(self, remote: str, content: str, mode: int = 0o600) -> None:
        """Write a small file atomically (temp file, chmod, rename) through a command's stdin."""
        tmp = shlex.quote(f"{remote}.tmp")
        await self.run(f"umask 077 && mkdir -p {shlex.quote(str(Path(remote).parent))} && cat > {tmp} && "
                       f"chmod {mode:o} {tmp} && mv -f {tmp} {shlex.quote(remote)}", input=content)

    async def close(self) -> None:
        for conn in (self._conn, self._jump):
            if conn is not None:
                conn.close()
                try:
                    await asyncio.wait_for(conn.wait_closed(), 2)
                except TimeoutError:
                    pass

    async def __aenter__(self) -> HostConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
