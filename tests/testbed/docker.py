"""Session fixtures: a Docker daemon, a local registry and tiny game images pushed to it.

    def test_x(game_image: GameImage, docker_client: DockerClient) -> None:
        docker_client.images.pull(game_image.v1)       # really pulls: no local copy is left

`docker_daemon` uses the daemon on /var/run/docker.sock (or DOCKER_HOST) when
it answers, else starts `dockerd` by hand under a temporary dir (root only)
and points DOCKER_HOST at it for the session. `registry` runs
`docker-registry serve` on a free 127.0.0.1 port (no auth; loopback registries
need no daemon config). `game_image` builds a rootfs with the static busybox
and its applet links, imports it with `CMD httpd -f -p 8080 -h /www`, pushes it
as `REGISTRY/game/tiny:1` and `:2` (different /www/version) and removes the
local copies.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = ["DockerDaemon", "GameImage", "Registry", "build_and_push", "free_port", "rootfs_tar", "testbed_missing"]

DEFAULT_SOCKET = "/var/run/docker.sock"
START_TIMEOUT = 60.0
APPLETS = ("sh", "httpd", "nc", "sleep", "echo", "cat", "ls", "mkdir", "printf", "env", "true", "false",
           "wget", "ps", "kill", "date", "test", "[", "grep", "rm", "touch")
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
GAME_CMD = ["httpd", "-f", "-p", "8080", "-h", "/www"]


def testbed_missing(reason: str) -> None:
    """Skip the test for a missing testbed tool, or fail it when the testbed is required (CI)."""
    if os.environ.get("GAMENODE_REQUIRE_TESTBED") == "1":
        pytest.fail(f"testbed required (GAMENODE_REQUIRE_TESTBED=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class DockerDaemon:
    host: str
    """The DOCKER_HOST URL (`unix:///...`)."""
    started: bool
    """Whether the fixture started it (and stops it at the end)."""


@dataclass(frozen=True)
class Registry:
    address: str
    """`127.0.0.1:PORT`: the prefix of image references."""
    root: Path
    """Its storage directory."""

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True)
class GameImage:
    repo: str
    """`127.0.0.1:PORT/game/tiny`."""
    v1: str
    v2: str
    digests: dict[str, str]
    """Reference → the registry's digest."""


def _sdk_client(host: str) -> Any:
    import docker  # type: ignore[import-untyped, unused-ignore]

    return docker.DockerClient(base_url=host, timeout=120)


def _answers(host: str) -> bool:
    try:
        client = _sdk_client(host)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _start_dockerd(root: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    sock = root / "docker.sock"
    log_path = root / "dockerd.log"
    command = ["dockerd", "--host", f"unix://{sock}", "--data-root", str(root / "data"),
               "--exec-root", str(root / "exec"), "--pidfile", str(root / "dockerd.pid")]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    host = f"unix://{sock}"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        if sock.exists() and _answers(host):
            return process, host, log_path
        time.sleep(0.25)
    _stop(process)
    tail = log_path.read_text(errors="replace")[-2000:]
    pytest.fail(f"dockerd did not answer within {START_TIMEOUT:g}s; its log ends:\n{tail}", pytrace=False)


def _stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@pytest.fixture(scope="session")
def docker_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerDaemon]:
    """A Docker daemon that answers: the running one, or one started by hand for the session."""
    try:
        import docker  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
    except ImportError:
        testbed_missing("the docker SDK is not installed")
    env_host = os.environ.get("DOCKER_HOST", "")
    host = env_host or f"unix://{DEFAULT_SOCKET}"
    if _answers(host):
        yield DockerDaemon(host=host, started=False)
        return
    if shutil.which("dockerd") is None:
        testbed_missing(f"no Docker daemon answers at {host} and dockerd is not installed")
    if os.geteuid() != 0:
        testbed_missing(f"no Docker daemon answers at {host} and starting dockerd needs root")
    process, host, _ = _start_dockerd(tmp_path_factory.mktemp("dockerd"))
    os.environ["DOCKER_HOST"] = host
    try:
        yield DockerDaemon(host=host, started=True)
    finally:
        if env_host:
            os.environ["DOCKER_HOST"] = env_host
        else:
            os.environ.pop("DOCKER_HOST", None)
        _stop(process)


@pytest.fixture(scope="session")
def docker_client(docker_daemon: DockerDaemon) -> Iterator[Any]:
    """A docker SDK client of `docker_daemon`."""
    client = _sdk_client(docker_daemon.host)
    try:
        yield client
    finally:
        client.close()


def _registry_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """`docker-registry serve` on a free loopback port, storing under a temporary dir."""
    binary = shutil.which("docker-registry")
    if binary is None:
        testbed_missing("docker-registry is not installed (Debian package docker-registry)")
    root = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n  delete:\n    enabled: true\nhttp:\n  addr: {address}\n")
    log_path = root / "registry.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([str(binary), "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    found = Registry(address=address, root=root / "data")
    try:
        deadline = time.monotonic() + 30.0
        while not _registry_answers(found.url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not answer on {address}; its log ends:\n"
                            f"{log_path.read_text(errors='replace')[-2000:]}", pytrace=False)
            time.sleep(0.1)
        yield found
    finally:
        _stop(process, grace=5.0)


def _static_busybox() -> Path | None:
    """A statically linked busybox (no ELF interpreter): it runs in an image with nothing else."""
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file() and not _has_interpreter(path):
            return path
    return None


def _has_interpreter(path: Path) -> bool:
    """Whether an ELF file asks for a dynamic loader (a PT_INTERP program header)."""
    data = path.read_bytes()[:65536]
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only
        return True
    endian = "<" if data[5] == 1 else ">"
    phoff, = struct.unpack_from(endian + "Q", data, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    for index in range(phnum):
        offset = phoff + index * phentsize
        if offset + 4 <= len(data) and struct.unpack_from(endian + "I", data, offset)[0] == 3:
            return True
    return False


def rootfs_tar(busybox: Path, version: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A root filesystem: /bin/busybox with its applet links, /www/index.html, /www/version and `extra` files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("bin", "www", "tmp", "data"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        files = {"www/index.html": f"tiny game {version}\n".encode(), "www/version": f"{version}\n".encode()}
        for name, content in {**files, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def build_and_push(client: Any, ref: str, version: str, extra: dict[str, bytes] | None = None) -> str:
    """Build the busybox image `ref` (`registry/repo:tag`), push it, remove the local copy: the registry's digest.

    `extra` files make its layer unique (a pull then really downloads it, whatever else the daemon holds).
    """
    busybox = _static_busybox()
    if busybox is None:
        testbed_missing("no static busybox (Debian package busybox-static)")
    repo, tag = ref.rsplit(":", 1)
    changes = [f"CMD {GAME_CMD}".replace("'", '"'), "WORKDIR /"]
    result = client.api.import_image_from_data(rootfs_tar(busybox, version, extra), repository=repo, tag=tag,
                                               changes=changes)
    if "error" in str(result).lower():
        pytest.fail(f"docker import of {ref} failed: {result}", pytrace=False)
    _push(client, ref)
    digest = str(client.api.inspect_distribution(ref)["Descriptor"]["digest"])
    with contextlib.suppress(Exception):
        client.api.remove_image(ref, force=True)
    return digest


def _push(client: Any, ref: str) -> None:
    repo, tag = ref.rsplit(":", 1)
    for event in client.api.push(repo, tag=tag, stream=True, decode=True):
        if event.get("error"):
            pytest.fail(f"pushing {ref} failed: {event['error']}", pytrace=False)


@pytest.fixture(scope="session")
def game_image(docker_client: Any, registry: Registry) -> Iterator[GameImage]:
    """`REGISTRY/game/tiny:1` and `:2` in the registry, with no local copies (pulls really pull)."""
    repo = f"{registry.address}/game/tiny"
    refs = {version: f"{repo}:{version}" for version in ("1", "2")}
    session = {"www/session": uuid.uuid4().hex.encode()}  # no layer shared with another test session's images
    digests = {ref: build_and_push(docker_client, ref, version, session) for version, ref in refs.items()}
    try:
        yield GameImage(repo=repo, v1=refs["1"], v2=refs["2"], digests=digests)
    finally:
        for ref in refs.values():
            with contextlib.suppress(Exception):
                docker_client.api.remove_image(ref, force=True)
