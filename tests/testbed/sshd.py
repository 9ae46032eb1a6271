"""Session fixtures: private OpenSSH `sshd` processes on loopback that stand in for a fleet of hosts.

    def test_x(sshd_hosts: Callable[[int], list[SshHost]], ssh_client_key: ClientKey) -> None:
        a, b = sshd_hosts(2)        # two new sshd, each on its own 127.0.0.1 port with its own host key
        # ssh -i {ssh_client_key.private} -p {a.port} root@127.0.0.1   (a.prefix: that host's "/opt/gamenode")

Each host is `/usr/sbin/sshd -D -e -f CONFIG` run by this user (root in CI) with
its own ed25519 host key, `AuthorizedKeysFile` = the session's client key,
public-key logins only, SFTP, `MaxStartups 100` and `MaxSessions 10`. They all
share this machine's filesystem, so each host gets its own `prefix` directory:
whatever a rollout installs on a host goes under it. Hosts are stopped at the
end of the session; `kill_prefix_processes(prefix)` ends whatever an agent
rollout started there (the pids under `PREFIX/run/`).

`agent_builds` gives three builds of the project to roll out: `current` (the
checkout), `newer` (a copy with the agent's version bumped, `X.post1`) and
`crashing` (`X.post2`, whose agent exits with status 3 at once). Each is a
`bootstrap.bundle.Bundle` (`build.bundle.archive` is what a rollout's `bundle`
field takes) built from one dependency wheelhouse (`build.wheelhouse`, what
`--wheelhouse` takes). The wheels and bundles are cached in pytest's cache dir
(`.pytest_cache/d/gamenode-rollout`): only the first session downloads (PyPI).
The bundles are built for this interpreter's Python; `host_python()` names the
interpreter a host's venv should be made with (`SshAccess.python`).

The plain functions (`make_client_key`, `start_sshd`, `stop_sshd`,
`known_hosts_for`, `build_variant`, ...) need no pytest: the rollout bench uses
them too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.docker import free_port, testbed_missing

__all__ = [
    "SFTP_SERVER",
    "SSHD",
    "AgentBuild",
    "AgentBuilds",
    "ClientKey",
    "SshHost",
    "build_all",
    "build_variant",
    "copy_source",
    "fingerprint",
    "host_python",
    "host_python_version",
    "kill_prefix_processes",
    "known_hosts_for",
    "make_client_key",
    "prefix_pids",
    "sshd_missing",
    "start_sshd",
    "stop_sshd",
]

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
PRIVSEP_DIR = Path("/run/sshd")
START_TIMEOUT = 15.0
REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "proto")
"""The package directories a build copies (with pyproject.toml and README.md): the ones a bundle holds."""


@dataclass(frozen=True)
class ClientKey:
    private: Path
    public: Path
    public_line: str
    """`ssh-ed25519 AAAA... comment`: the authorized_keys line."""


@dataclass(frozen=True)
class SshHost:
    name: str
    port: int
    host_key_fingerprint: str
    """`SHA256:...` as OpenSSH prints it."""
    host_key_pub_line: str
    """`ssh-ed25519 AAAA...` (no comment)."""
    prefix: Path
    """This host's install root (what `/opt/gamenode` is on a real host)."""
    process: subprocess.Popen[bytes]
    root: Path
    """The sshd's own files: config, host key, log."""
    address: str = "127.0.0.1"
    user: str = "root"

    @property
    def log(self) -> str:
        try:
            return (self.root / "sshd.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


# --- plain functions (no pytest) --------------------------------------------------


def sshd_missing() -> str | None:
    """Why private sshd hosts cannot run here, or None when they can."""
    if not SSHD.is_file():
        return f"{SSHD} is missing (Debian package openssh-server)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is missing (Debian package openssh-client)"
    if not SFTP_SERVER.is_file():
        return f"{SFTP_SERVER} is missing (Debian package openssh-sftp-server)"
    if not PRIVSEP_DIR.is_dir():
        try:
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True)
        except OSError as exc:
            return f"sshd's privilege separation dir {PRIVSEP_DIR} is missing and cannot be made: {exc}"
    return None


def make_client_key(directory: Path, name: str = "id_ed25519") -> ClientKey:
    """A new ed25519 key pair (no passphrase) under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    _keygen(private, comment=f"gamenode-test-{name}")
    public = private.with_name(name + ".pub")
    return ClientKey(private=private, public=public, public_line=public.read_text().strip())


def _keygen(path: Path, comment: str) -> None:
    for stale in (path, path.with_name(path.name + ".pub")):
        stale.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL, capture_output=True)
    path.chmod(0o600)


def fingerprint(pub_line: str) -> str:
    """`SHA256:<base64, no padding>` of a public key line, as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(pub_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _config(root: Path, port: int, host_key: Path, authorized_keys: Path) -> str:
    return "\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {host_key}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        "MaxStartups 100",
        "MaxSessions 10",
        f"Subsystem sftp {SFTP_SERVER}",
        "",
    ])


def start_sshd(root: Path, name: str, authorized_keys: Path, prefix: Path | None = None) -> SshHost:
    """A private sshd on a free 127.0.0.1 port, its files under `root`; returns once the port answers."""
    reason = sshd_missing()
    if reason is not None:
        raise RuntimeError(reason)
    root.mkdir(parents=True, exist_ok=True)
    host_key = root / "ssh_host_ed25519_key"
    _keygen(host_key, comment=name)
    pub_line = " ".join(host_key.with_name(host_key.name + ".pub").read_text().split()[:2])
    prefix = prefix or root / "gamenode"  # the rollout refuses a prefix whose last part lacks "gamenode"
    prefix.mkdir(parents=True, exist_ok=True)
    last_error = ""
    for _ in range(3):  # the free port may be taken between the probe and sshd's bind
        port = free_port()
        config = root / "sshd_config"
        config.write_text(_config(root, port, host_key, authorized_keys))
        log_path = root / "sshd.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        host = SshHost(name=name, port=port, host_key_fingerprint=fingerprint(pub_line), host_key_pub_line=pub_line,
                       prefix=prefix, process=process, root=root, user=_user())
        if _wait_banner(host):
            return host
        stop_sshd(host)
        last_error = host.log[-2000:]
    raise RuntimeError(f"sshd {name} did not answer on 127.0.0.1; its log ends:\n{last_error}")


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _wait_banner(host: SshHost) -> bool:
    """Wait until the sshd sends its `SSH-2.0-` banner; False when it exits or stays silent."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if host.process.poll() is not None:
            return False
        try:
            with socket.create_connection((host.address, host.port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def stop_sshd(host: SshHost) -> None:
    """SIGTERM the sshd's process group (its listener and any session it still serves), then SIGKILL."""
    process = host.process
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def known_hosts_for(hosts: Sequence[SshHost]) -> str:
    """known_hosts lines (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`) trusting every host's key."""
    return "".join(f"[{host.address}]:{host.port} {host.host_key_pub_line}\n" for host in hosts)


def prefix_pids(prefix: Path) -> list[int]:
    """The pids named by `PREFIX/run/*.pid` (the supervisor's and the agent's)."""
    pids = []
    files = sorted((prefix / "run").glob("*.pid"), key=lambda p: (p.name != "supervisor.pid", p.name))
    for pid_file in files:
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(pid_file.read_text().split()[0]))
    return pids


def kill_prefix_processes(prefix: Path) -> list[int]:
    """SIGKILL the processes of `PREFIX/run/*.pid` and any other whose executable lives under `prefix`.

    The supervisor first (so it does not restart the agent), then the rest; the pids that were killed.
    """
    killed = []
    for pid in [*prefix_pids(prefix), *_pids_running_from(prefix)]:
        if pid in killed or pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _pids_running_from(prefix: Path) -> list[int]:
    """Processes whose command line names a path under `prefix` (an agent whose pid file is gone)."""
    needle = str(prefix.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


# --- agent builds --------------------------------------------------------------------


@dataclass(frozen=True)
class AgentBuild:
    name: str
    version: str
    source: Path
    """The project tree it was built from (the checkout itself for `current`)."""
    bundle: Any
    """The `bootstrap.bundle.Bundle` (`bundle.archive`: what a rollout's `bundle` field takes)."""
    wheelhouse: Path
    """The agent's dependency wheels it was built from (what `--wheelhouse` takes, offline)."""


@dataclass(frozen=True)
class AgentBuilds:
    current: AgentBuild
    newer: AgentBuild
    """`current` with its version bumped (`X.post1`)."""
    crashing: AgentBuild
    """Bumped again (`X.post2`); its agent exits with status 3 as soon as it starts."""


_VERSION = re.compile(r'^(__version__ = ")([^"]+)(")', re.MULTILINE)
_PROJECT_VERSION = re.compile(r'^(version = ")([^"]+)(")', re.MULTILINE)
CRASH_MAIN = '"""A build whose agent exits at once (rollback tests)."""\n\nraise SystemExit(3)\n'
CRASH_CLI = ('\n\ndef main(argv: object = None) -> int:  # a build whose agent exits at once (rollback tests)\n'
             '    raise SystemExit(3)\n')


def copy_source(destination: Path, version: str, crashing: bool = False) -> Path:
    """A copy of the project's packages, pyproject.toml and README.md, the agent (and wheel) at `version`."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for package in PACKAGES:
        shutil.copytree(REPO_ROOT / package, destination / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, destination / name)
    init = destination / "agent" / "__init__.py"
    init.write_text(_VERSION.sub(rf"\g<1>{version}\g<3>", init.read_text(), count=1))
    pyproject = destination / "pyproject.toml"
    pyproject.write_text(_PROJECT_VERSION.sub(rf"\g<1>{version}\g<3>", pyproject.read_text(), count=1))
    if crashing:
        (destination / "agent" / "__main__.py").write_text(CRASH_MAIN)
        with (destination / "agent" / "cli.py").open("a") as cli:
            cli.write(CRASH_CLI)
    return destination


def build_variant(name: str, source: Path, cache: Path, wheelhouse: Path | None = None) -> AgentBuild:
    """The bundle of `source`, cached under `cache` (the dependency wheels: `wheelhouse`, else downloaded once)."""
    from bootstrap.bundle import build_bundle

    bundle = build_bundle(cache, wheelhouse=wheelhouse, source=source, python_version=host_python_version())
    if wheelhouse is None:
        wheelhouse = _downloaded_wheelhouse(cache, bundle.python)
    return AgentBuild(name=name, version=bundle.version, source=source, bundle=bundle, wheelhouse=wheelhouse)


def _downloaded_wheelhouse(cache: Path, python_version: str) -> Path:
    """The wheelhouse `build_bundle` downloaded into `cache` (`wheels/py<X.Y>-<arch>-<key>/`)."""
    found = sorted((cache / "wheels").glob(f"py{python_version}-*/.complete"), key=lambda p: p.stat().st_mtime)
    assert found, f"build_bundle left no wheelhouse under {cache}/wheels"
    return found[-1].parent


def host_python_version() -> str:
    """`X.Y` of the Python the bundles are built for: this interpreter's (the hosts run `host_python()`)."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def host_python() -> str:
    """The interpreter a host's agent venv is made with: `python3` when the one on sshd's PATH matches ours
    (Debian's /usr/bin/python3 in CI), else this interpreter's base (e.g. pyenv's) by its full path."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if _python_version(candidate) == host_python_version():
            return "python3" if candidate == "/usr/bin/python3" else candidate
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _python_version(path: str) -> str | None:
    if not os.access(path, os.X_OK):
        return None
    try:
        done = subprocess.run([path, "-c", "import sys, venv; print(*sys.version_info[:2], sep='.')"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def build_all(cache: Path, work: Path) -> AgentBuilds:
    """`current`, `newer` and `crashing` builds of the checkout; one dependency wheelhouse for all three."""
    from bootstrap.bundle import read_version

    base = read_version(REPO_ROOT)
    current = build_variant("current", REPO_ROOT, cache)
    newer = build_variant("newer", copy_source(work / "newer", f"{base}.post1"), cache, current.wheelhouse)
    crashing = build_variant("crashing", copy_source(work / "crashing", f"{base}.post2", crashing=True), cache,
                             current.wheelhouse)
    return AgentBuilds(current=current, newer=newer, crashing=crashing)


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def ssh_client_key(tmp_path_factory: pytest.TempPathFactory) -> ClientKey:
    """The session's client key pair: every `sshd_hosts` host accepts it (root login)."""
    if shutil.which("ssh-keygen") is None:
        testbed_missing("ssh-keygen is missing (Debian package openssh-client)")
    return make_client_key(tmp_path_factory.mktemp("ssh-client"))


@pytest.fixture(scope="session")
def sshd_hosts(tmp_path_factory: pytest.TempPathFactory, ssh_client_key: ClientKey
               ) -> Iterator[Callable[[int], list[SshHost]]]:
    """`sshd_hosts(n)`: n new private sshd hosts, stopped (and their agents killed) at the end of the session."""
    reason = sshd_missing()
    if reason is not None:
        testbed_missing(reason)
    started: list[SshHost] = []

    def start(count: int) -> list[SshHost]:
        hosts = []
        for _ in range(count):
            name = f"host{len(started)}"
            host = start_sshd(tmp_path_factory.mktemp(f"sshd-{name}"), name, ssh_client_key.public)
            started.append(host)
            hosts.append(host)
        return hosts

    try:
        yield start
    finally:
        for host in started:
            kill_prefix_processes(host.prefix)
            stop_sshd(host)


@pytest.fixture(scope="session")
def agent_builds(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AgentBuilds:
    """`current`, `newer` and `crashing` builds of the project (wheelhouse + bundle each), cached across sessions."""
    try:
        import bootstrap.bundle  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"bootstrap.bundle is not importable: {exc}", pytrace=False)
    from bootstrap.errors import BootstrapError

    cache_plugin = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    cache = Path(cache_plugin.mkdir("gamenode-rollout")) if cache_plugin is not None else \
        tmp_path_factory.mktemp("gamenode-rollout")
    try:
        return build_all(cache, tmp_path_factory.mktemp("agent-builds"))
    except BootstrapError as exc:  # no PyPI and nothing cached yet: a missing testbed
        testbed_missing(f"building the agent bundles failed (the first build needs PyPI): {exc}")
        raise
