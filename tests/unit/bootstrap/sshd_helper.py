"""A throwaway private sshd on 127.0.0.1 for the bootstrap unit tests (the shared fixtures are `testbed.sshd`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SSHD", "LocalSshd", "client_key", "start_sshd"]

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")


@dataclass
class LocalSshd:
    port: int
    host_key: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_key(directory: Path) -> Path:
    """An ed25519 client key pair in `directory` (`id`, `id.pub`)."""
    key = directory / "id"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def start_sshd(directory: Path, client: Path) -> LocalSshd:
    """An sshd -D on a free loopback port, accepting `client`'s key for root."""
    directory.mkdir(parents=True, exist_ok=True)
    host_key = directory / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    shutil.copyfile(client.with_suffix(".pub"), directory / "authorized_keys")
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {directory}/authorized_keys\n"
        f"PermitRootLogin yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nPidFile {directory}/sshd.pid\nSubsystem sftp {SFTP_SERVER}\nMaxStartups 100\n")
    os.makedirs("/run/sshd", exist_ok=True)
    with open(directory / "sshd.log", "wb") as log:
        process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return LocalSshd(port, host_key, process)
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"sshd did not listen on {port}: {(directory / 'sshd.log').read_text()}")
