"""`bootstrap.ssh` and `RemoteHost` against a real private sshd on loopback (see sshd_helper.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd_helper import SFTP_SERVER, SSHD, LocalSshd, client_key, start_sshd
from testbed.docker import testbed_missing as missing_tool

from bootstrap.bundle import build_bundle
from bootstrap.errors import BootstrapError, HostKeyError
from bootstrap.known_hosts import KnownHosts, fingerprint
from bootstrap.rollout import Action, HostResult, HostTarget, Rollout, RolloutOptions
from bootstrap.ssh import connect, scan_host_key
from console.models import SshAccess
from console.service.ca import HubCA

pytestmark = pytest.mark.ssh


@pytest.fixture(autouse=True)
def _openssh() -> None:
    if not (SSHD.exists() and SFTP_SERVER.exists() and shutil.which("ssh-keygen")):
        missing_tool("needs OpenSSH sshd, sftp-server and ssh-keygen (Debian: openssh-server)")


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def sshd(keydir: Path) -> Iterator[LocalSshd]:
    server = start_sshd(keydir / "sshd", client_key(keydir))
    yield server
    server.stop()


def _access(sshd: LocalSshd, keydir: Path, **more: str) -> SshAccess:
    return SshAccess(host="127.0.0.1", port=sshd.port, identity_file=str(client_key(keydir)), **more)


async def test_unknown_key_refused_then_trusted(sshd: LocalSshd, keydir: Path, tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    access = _access(sshd, keydir)
    key = await scan_host_key(access, known)
    with pytest.raises(HostKeyError) as caught:
        await connect(access, known, node="n1")
    assert caught.value.verdict == "unknown"
    assert fingerprint(key) in caught.value.message and "gamenode ssh trust n1" in caught.value.message
    async with await connect(access, known, trust_new=True) as conn:
        assert (await conn.run("echo hi")).stdout == "hi\n"
    assert known.check("127.0.0.1", sshd.port, key) == "known"
    async with await connect(access, known) as conn:
        result = await conn.run("exit 3", check=False)
        assert result.exit_status == 3
        with pytest.raises(BootstrapError, match="exit 3"):
            await conn.run("echo oops >&2; exit 3")


async def test_changed_key_always_refused(sshd: LocalSshd, keydir: Path, tmp_path: Path) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    known = KnownHosts(tmp_path / "known_hosts")
    known.trust("127.0.0.1", sshd.port, other)
    with pytest.raises(HostKeyError) as caught:
        await connect(_access(sshd, keydir), known, trust_new=True)
    assert caught.value.verdict == "changed"
    assert fingerprint(other) in caught.value.message


async def test_wrong_client_key_and_closed_port(sshd: LocalSshd, keydir: Path, tmp_path: Path) -> None:
    known = KnownHosts(tmp_path / "known_hosts")
    stranger = client_key(tmp_path)
    with pytest.raises(BootstrapError, match="permission denied"):
        await connect(SshAccess(host="127.0.0.1", port=sshd.port, identity_file=str(stranger)), known,
                      trust_new=True)
    with pytest.raises(BootstrapError, match="cannot connect"):
        await connect(SshAccess(host="127.0.0.1", port=1, identity_file=str(stranger)), known, timeout=2)


async def test_put_and_write_file(sshd: LocalSshd, keydir: Path, tmp_path: Path) -> None:
    data = tmp_path / "blob"
    data.write_bytes(os.urandom(3 << 20))
    async with await connect(_access(sshd, keydir), KnownHosts(tmp_path / "kh"), trust_new=True) as conn:
        await conn.put(data, str(tmp_path / "remote" / "deep" / "blob"))
        await conn.write_file(str(tmp_path / "etc" / "token"), "s3cret\n")
    assert (tmp_path / "remote" / "deep" / "blob").read_bytes() == data.read_bytes()
    assert (tmp_path / "etc" / "token").read_text() == "s3cret\n"
    assert (tmp_path / "etc" / "token").stat().st_mode & 0o777 == 0o600


@pytest.mark.slow
async def test_install_noop_uninstall_on_a_real_host(sshd: LocalSshd, keydir: Path, tmp_path: Path) -> None:
    """The real steps end to end (verify: the supervised agent process stays up; the hub is not involved)."""
    cache = Path(os.environ.get("GAMENODE_BUNDLE_CACHE", tmp_path / "bundles"))
    try:
        bundle = await asyncio.to_thread(build_bundle, cache)
    except BootstrapError as exc:
        missing_tool(f"cannot build a bundle here (the first build needs PyPI): {exc}")
    prefix = tmp_path / "node" / "gamenode"

    async def verify(node_id: str, version: str, timeout: float) -> bool:
        pid = prefix / "run" / "agent.pid"
        for _ in range(100):
            if pid.exists() and (prefix / "agent" / "current" / "VERSION").read_text().strip() == version:
                return True
            await asyncio.sleep(0.05)
        return False

    (tmp_path / "hub").mkdir()
    ca_pem = HubCA.load_or_create(tmp_path / "hub").ca_pem
    target = HostTarget("n1", _access(sshd, keydir, prefix=str(prefix)), "127.0.0.1:9", "tok-n1", ca_pem=ca_pem)
    options = RolloutOptions(known_hosts=tmp_path / "kh", bundle=bundle, trust_new_host_keys=True, timeout=10)
    try:
        first = await Rollout([target], options, verify=verify).run()
        assert first[0].result is HostResult.INSTALLED, first[0]
        assert (prefix / "etc" / "token").read_text() == "tok-n1\n"
        assert (prefix / "etc" / "agent.env").stat().st_mode & 0o777 == 0o600
        assert (prefix / "etc" / "ca.pem").read_bytes() == ca_pem
        assert (prefix / "etc" / "ca.pem").stat().st_mode & 0o777 == 0o644
        assert f"GAMENODE_AGENT_CA_FILE={prefix}/etc/ca.pem\n" in (prefix / "etc" / "agent.env").read_text()
        second = await Rollout([target], options, verify=verify).run()
        assert second[0].result is HostResult.UNCHANGED, second[0]
    finally:
        options.action = Action.UNINSTALL
        gone = await Rollout([target], options, verify=verify).run()
    assert gone[0].result is HostResult.REMOVED, gone[0]
    assert not prefix.exists()
