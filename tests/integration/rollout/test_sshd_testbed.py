"""The sshd testbed itself: hosts answer with their own host key and accept only the session's client key."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from testbed.sshd import ClientKey, SshHost, known_hosts_for, make_client_key

pytestmark = [pytest.mark.ssh]


def ssh(host: SshHost, key: Path, known_hosts: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ssh", "-i", str(key), "-p", str(host.port), "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
         f"{host.user}@{host.address}", command],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_hosts_accept_the_client_key_and_show_their_own_host_key(
        sshd_hosts: Callable[[int], list[SshHost]], ssh_client_key: ClientKey, tmp_path: Path) -> None:
    hosts = sshd_hosts(2)
    assert hosts[0].port != hosts[1].port
    assert hosts[0].host_key_fingerprint != hosts[1].host_key_fingerprint
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_for(hosts))
    for host in hosts:
        done = ssh(host, ssh_client_key.private, known_hosts, "echo ok")
        assert done.returncode == 0, done.stderr + host.log
        assert done.stdout == "ok\n"
        listed = subprocess.run(["ssh-keygen", "-lf", "-"], input=host.host_key_pub_line, capture_output=True,
                                text=True, check=True).stdout
        assert host.host_key_fingerprint in listed
    stranger = make_client_key(tmp_path / "stranger")
    refused = ssh(hosts[0], stranger.private, known_hosts, "echo ok")
    assert refused.returncode == 255
    assert "Permission denied" in refused.stderr
