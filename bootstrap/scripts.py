"""The shell scripts the steps run on a host: each step is one `sh -s` with the script on stdin.

One exec per step because a session costs a login shell on the host (which may
read a slow rc file); stdin keeps secrets out of `ps`. Every value is quoted
with `shlex.quote`. The scripts need a POSIX sh and GNU coreutils (`mv -T`).
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Collection

from bootstrap.errors import BootstrapError

__all__ = [
    "CA_PATH",
    "SUPERVISOR",
    "UNIT_NAME",
    "UNIT_PATH",
    "check_prefix",
    "configure_script",
    "install_script",
    "preflight_script",
    "remove_script",
    "rollback_script",
    "start_script",
    "stop_script",
    "switch_script",
]

SUPERVISOR = "bin/gamenode-supervise"
CA_PATH = "etc/ca.pem"
"""The hub's CA under the prefix (GAMENODE_AGENT_CA_FILE)."""
IDENTITY_CERT = "state/identity/cert.pem"
"""The agent's certificate under the prefix, once it joined (see `agent.identity`)."""
UNIT_NAME = "gamenode-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"

_SYSTEM_DIRS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
                          "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/lib", "/mnt"})


def check_prefix(prefix: str) -> str:
    """The normalized prefix; `BootstrapError` unless absolute, not a system dir and named like gamenode."""
    norm = posixpath.normpath(prefix) if prefix else ""
    if not norm.startswith("/") or norm.startswith("//") or norm in _SYSTEM_DIRS:
        raise BootstrapError(f"prefix {prefix!r}: refused (must be an absolute directory of its own, "
                             "e.g. /opt/gamenode)")
    if "gamenode" not in posixpath.basename(norm):
        raise BootstrapError(f"prefix {prefix!r}: refused (its last part must contain 'gamenode', "
                             "so that removing it cannot remove anything else)")
    return norm


def _head(prefix: str, **values: str) -> str:
    lines = ["set -eu", f"P={shlex.quote(prefix)}"]
    lines += [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


_PREFLIGHT_PY = r'''
import os, socket, sys, time
print("python=%d.%d" % sys.version_info[:2])
try:
    import venv  # noqa
    print("venv=1")
except Exception:
    print("venv=0")
path = os.environ.get("GN_PREFIX", "/")
while path and not os.path.isdir(path):
    path = os.path.dirname(path)
st = os.statvfs(path or "/")
print("free=%d" % (st.f_bavail * st.f_frsize))
try:
    s = socket.socket(socket.AF_UNIX); s.settimeout(1); s.connect("/var/run/docker.sock")
    s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    print("docker=%d" % (b"OK" in s.recv(512)))
except Exception:
    print("docker=0")
print("time=%.3f" % time.time())
'''


def preflight_script(prefix: str, python: str, version: str, sha: str) -> str:
    """Facts as `key=value` lines (see `steps.Facts`)."""
    return _head(prefix, PY=python, V=version, SHA=sha) + f'''set +e
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
[ -d /run/systemd/system ] && echo systemd=1
GN_PREFIX="$P" "$PY" - <<'GAMENODE_PY' 2>/dev/null
{_PREFLIGHT_PY}
GAMENODE_PY
A="$P/agent"
[ -f "$A/current/VERSION" ] && echo "version=$(cat "$A/current/VERSION")"
[ -f "$A/current/BUNDLE" ] && echo "current_sha=$(cat "$A/current/BUNDLE")"
[ -f "$A/previous/VERSION" ] && echo "previous=$(cat "$A/previous/VERSION")"
[ -f "$A/$V/BUNDLE" ] && echo "installed_sha=$(cat "$A/$V/BUNDLE")"
[ -f "$P/bundles/$SHA.tar.gz" ] && echo "bundle_size=$(wc -c < "$P/bundles/$SHA.tar.gz")"
[ -f "$P/etc/agent.env" ] && echo "config_sha=$(sha256sum < "$P/etc/agent.env" | cut -c1-64)"
[ -s "$P/etc/token" ] && echo "token_sha=$(sha256sum < "$P/etc/token" | cut -c1-64)"
[ -f "$P/{CA_PATH}" ] && echo "ca_sha=$(sha256sum < "$P/{CA_PATH}" | cut -c1-64)"
[ -s "$P/{IDENTITY_CERT}" ] && echo enrolled=1
[ -f "$P/{SUPERVISOR}" ] && echo "supervisor_sha=$(sha256sum < "$P/{SUPERVISOR}" | cut -c1-64)"
if [ -d /run/systemd/system ] && [ -f {UNIT_PATH} ]; then
    systemctl is-active --quiet {UNIT_NAME} && echo running=1
elif [ -x "$P/{SUPERVISOR}" ]; then
    "$P/{SUPERVISOR}" status && echo running=1
fi
exit 0
'''


def install_script(prefix: str, python: str, version: str, sha: str, python_version: str) -> str:
    """Venv `PREFIX/agent/VERSION.tmp` + the bundle's site-packages, then renamed to `PREFIX/agent/VERSION`."""
    return _head(prefix, PY=python, V=version, SHA=sha, PYV=python_version) + '''A="$P/agent"; D="$A/$V"; T="$D.tmp"
B="$P/bundles/$SHA.tar.gz"
if [ -f "$D/BUNDLE" ] && [ "$(cat "$D/BUNDLE")" = "$SHA" ]; then echo "already installed"; exit 0; fi
if ! echo "$SHA  $B" | sha256sum -c --status; then
    rm -f "$B"; echo "bundle $B is damaged (sha256 mismatch): removed, run again" >&2; exit 1
fi
rm -rf "$T"
"$PY" -m venv --without-pip "$T"
S="$T/lib/python$PYV/site-packages"
mkdir -p "$S"
tar -xzf "$B" -C "$S"
printf '%s\\n' "$V" > "$T/VERSION"
printf '%s\\n' "$SHA" > "$T/BUNDLE"
if [ -e "$D" ]; then rm -rf "$D.old"; mv -T "$D" "$D.old"; fi
mv -T "$T" "$D"
rm -rf "$D.old"
echo "installed $D"
'''


def configure_script(prefix: str, files: dict[str, str], public: Collection[str] = ()) -> str:
    """Write each `PREFIX/<name>` (0600, or 0644 for names in `public`; temp file + rename) with its content;
    make the state dirs."""
    body = 'umask 077\nmkdir -p "$P/etc" "$P/state" "$P/log" "$P/run"\n'
    for name, content in files.items():
        target = f'"$P"/{shlex.quote(name)}'
        mode = "644" if name in public else "600"
        body += (f"printf '%s' {shlex.quote(content)} > {target}.tmp\nchmod {mode} {target}.tmp\n"
                 f"mv -f {target}.tmp {target}\n")
    return _head(prefix) + body


def switch_script(prefix: str, version: str) -> str:
    """`current` → VERSION (the one before becomes `previous`); each symlink replaced by a rename."""
    return _head(prefix, V=version) + '''A="$P/agent"
cur=$(readlink "$A/current" 2>/dev/null || true)
[ -d "$A/$V" ] || { echo "$A/$V is not installed" >&2; exit 1; }
if [ "$cur" = "$V" ]; then echo "already current"; exit 0; fi
if [ -n "$cur" ]; then ln -sfn "$cur" "$A/.previous.tmp"; mv -T "$A/.previous.tmp" "$A/previous"; fi
ln -sfn "$V" "$A/.current.tmp"
mv -T "$A/.current.tmp" "$A/current"
echo "current: ${cur:-none} -> $V"
'''


def rollback_script(prefix: str) -> str:
    """`current` back to `previous` (and `previous` to the failed one); prints the version gone back to."""
    return _head(prefix) + '''A="$P/agent"
prev=$(readlink "$A/previous" 2>/dev/null || true)
cur=$(readlink "$A/current" 2>/dev/null || true)
[ -n "$prev" ] && [ -d "$A/$prev" ] || { echo "no previous version to go back to" >&2; exit 1; }
ln -sfn "$prev" "$A/.current.tmp"; mv -T "$A/.current.tmp" "$A/current"
if [ -n "$cur" ]; then ln -sfn "$cur" "$A/.previous.tmp"; mv -T "$A/.previous.tmp" "$A/previous"; fi
cat "$A/current/VERSION"
'''


def start_script(prefix: str, systemd: bool) -> str:
    """(Re)start the agent: systemd (unit written already) or the supervisor."""
    if systemd:
        return _head(prefix) + f"systemctl daemon-reload\nsystemctl enable --quiet {UNIT_NAME}\n" \
                               f"systemctl restart {UNIT_NAME}\n"
    return _head(prefix) + f'"$P/{SUPERVISOR}" restart\n'


def stop_script(prefix: str) -> str:
    """Stop the agent however it runs; prints the installed version (if any) first."""
    return _head(prefix) + f'''[ -f "$P/agent/current/VERSION" ] && echo "version=$(cat "$P/agent/current/VERSION")"
if [ -d /run/systemd/system ] && [ -f {UNIT_PATH} ]; then
    systemctl disable --now --quiet {UNIT_NAME} || true
    rm -f {UNIT_PATH}
    systemctl daemon-reload
fi
if [ -x "$P/{SUPERVISOR}" ]; then
    "$P/{SUPERVISOR}" stop
else
    for f in "$P/run/supervisor.pid" "$P/run/agent.pid"; do
        [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true
    done
fi
exit 0
'''


def remove_script(prefix: str) -> str:
    """Remove PREFIX entirely (the prefix passed `check_prefix`)."""
    return _head(check_prefix(prefix)) + 'rm -rf -- "$P"\n[ ! -e "$P" ]\n'
