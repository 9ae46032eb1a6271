"""known_hosts parsing, matching and fingerprints, against ssh-keygen's own output."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path

import asyncssh
import pytest
from testbed.docker import testbed_missing as missing_tool

from bootstrap.errors import HostKeyError
from bootstrap.known_hosts import KnownHosts, fingerprint, host_pattern


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519").convert_to_public()


def _line(pattern: str, key: asyncssh.SSHKey) -> str:
    return f"{pattern} {key.algorithm.decode()} {base64.b64encode(key.public_data).decode()}\n"


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_public_key(tmp_path / "k.pub")
    try:
        out = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True,
                             check=True).stdout
    except FileNotFoundError:
        missing_tool("ssh-keygen not installed (Debian: openssh-client)")
    assert out.split()[1] == fingerprint(key.convert_to_public())
    assert fingerprint(key.convert_to_public()).startswith("SHA256:")


def test_host_pattern() -> None:
    assert host_pattern("h", 22) == "h"
    assert host_pattern("10.0.0.1", 2222) == "[10.0.0.1]:2222"


def test_check_known_unknown_changed(tmp_path: Path) -> None:
    a, b = _key(), _key()
    path = tmp_path / "known_hosts"
    path.write_text("# comment\n\n" + _line("h1,10.0.0.1", a) + _line("[h2]:2222", a) + "garbage line\n")
    known = KnownHosts(path)
    assert known.check("h1", 22, a) == "known"
    assert known.check("10.0.0.1", 22, a) == "known"
    assert known.check("h1", 22, b) == "changed"
    assert known.check("h2", 2222, a) == "known"
    assert known.check("h2", 22, a) == "unknown"
    assert known.check("h3", 22, a) == "unknown"
    assert known.known_fingerprints("h1", 22) == (fingerprint(a),)


def test_wildcards_negation_hashed_and_revoked(tmp_path: Path) -> None:
    a, b, c = _key(), _key(), _key()
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, b"[secret]:2200", hashlib.sha1).digest()
    hashed = f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"
    path = tmp_path / "known_hosts"
    path.write_text(_line("*.eu.example,!bad.eu.example", a) + _line(hashed, b) + "@revoked " + _line("*", c)
                    + "@cert-authority " + _line("*", b))
    known = KnownHosts(path)
    assert known.check("n1.eu.example", 22, a) == "known"
    assert known.check("bad.eu.example", 22, a) == "unknown"
    assert known.check("secret", 2200, b) == "known"
    assert known.check("anything", 22, c) == "changed"
    assert known.check("other", 22, b) == "unknown"


def test_trust_appends_and_keeps_the_rest(tmp_path: Path) -> None:
    a, b = _key(), _key()
    path = tmp_path / "sub" / "known_hosts"
    known = KnownHosts(path)
    known.trust("127.0.0.1", 2201, a)
    known.trust("127.0.0.1", 2201, a)
    known.trust("h", 22, b)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[127.0.0.1]:2201 ssh-ed25519 ")
    assert lines[1].startswith("h ssh-ed25519 ")
    assert path.stat().st_mode & 0o777 == 0o600
    assert known.check("127.0.0.1", 2201, a) == "known"


def test_trust_refuses_a_changed_key_unless_replacing(tmp_path: Path) -> None:
    a, b = _key(), _key()
    known = KnownHosts(tmp_path / "known_hosts")
    known.trust("h", 22, a)
    known.trust("other", 22, a)
    with pytest.raises(HostKeyError) as caught:
        known.trust("h", 22, b)
    assert caught.value.verdict == "changed"
    assert fingerprint(a) in caught.value.message and fingerprint(b) in caught.value.message
    known.trust("h", 22, b, replace=True)
    assert known.check("h", 22, b) == "known"
    assert known.check("h", 22, a) == "changed"
    assert known.check("other", 22, a) == "known"
