"""Every REST route, fuzzed from the hub's own OpenAPI description (schemathesis).

A real `gamenode hub` process over a fresh data dir serves the module; schemathesis reads its
`/openapi.json` and sends each operation generated requests (the coverage phase's edge values, then
hypothesis fuzzing, valid and invalid), authenticated as an admin with an API token made in the data
dir before the hub starts (the coverage phase also leaves the token out: 401). Each answer must not
be a 5xx and must match what its operation declares: status code, content type and body schema
(errors included, `console.hub.openapi`).

Bounded and repeatable: `MAX_EXAMPLES` per operation in the fuzzing phase, a fixed seed,
derandomized. The line `schemathesis: N case(s) over M operation(s)` on the terminal says what ran.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks

from console.models import Role
from console.service import Services
from console.store import Stores

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"^gamenode hub: REST API on (http://\S+) ")
MAX_EXAMPLES = 20
CONFIG = {
    "seed": 7,
    "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
    "phases": {
        # Edge values of every parameter, valid ones only (the fuzzing phase sends invalid ones too);
        # no probes with methods the API does not have (405s, nothing to learn).
        "coverage": {"unexpected-methods": [], "generation": {"mode": "positive"}},
        "stateful": {"enabled": False},
    },
}
CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_schema_conformance,
]

_cases: Counter[str] = Counter()
"""Cases sent, by operation (`GET /api/v1/nodes`)."""
_phases: Counter[str] = Counter()
_TOKEN = pytest.StashKey[str]()


def _admin_token(data_dir: Path) -> str:
    """An admin API token, made in the data dir before the hub locks it."""
    stores = Stores.open(data_dir)
    try:
        _, token = Services.over(stores).api_tokens.create("schemathesis", Role.ADMIN, created_by="test")
    finally:
        stores.close()
    return token


def _start_hub(data_dir: Path, root: Path) -> tuple[subprocess.Popen[str], str]:
    """`gamenode hub` on free ports; the process and its REST URL (from its ready line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMENODE_")}
    env["GAMENODE_LOG_LEVEL"] = "WARNING"
    env["GAMENODE_ROLLOUT_BUNDLE"] = str(root / "no-bundle.tar.gz")  # a rollout fails at once, never builds one
    command = [sys.executable, "-m", "console.cli", "hub", "--data-dir", str(data_dir),
               "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    with (root / "hub.stderr").open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the ready line comes first; a hub that fails closes stdout
    found = READY.match(line)
    if found is None:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        pytest.fail(f"the hub did not start: {line!r}\n{(root / 'hub.stderr').read_text(errors='replace')}")
    return proc, found.group(1)


@pytest.fixture(scope="module")
def hub_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzzed-hub")
    request.config.stash[_TOKEN] = _admin_token(root / "data")
    proc, url = _start_hub(root / "data", root)
    try:
        yield url
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
        _summary(request.config)
    assert code == 0, f"the hub exited with {code}:\n{(root / 'hub.stderr').read_text(errors='replace')}"


def _summary(config: pytest.Config) -> None:
    """One line on the terminal, past output capture: what ran."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    phases = ", ".join(f"{name} {n}" for name, n in sorted(_phases.items()))
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"schemathesis: {sum(_cases.values())} case(s) over {len(_cases)} operation(s) "
                            f"(by phase: {phases}; fuzzing: at most {MAX_EXAMPLES} per operation)")


@pytest.fixture(scope="module")
def api_schema(hub_url: str) -> Any:
    return schemathesis.openapi.from_url(f"{hub_url}/openapi.json", config=schemathesis.Config.from_dict(CONFIG))


@pytest.fixture(scope="module")
def admin(request: pytest.FixtureRequest, hub_url: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {request.config.stash[_TOKEN]}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_within_its_schema_and_never_5xx(case: schemathesis.Case, admin: dict[str, str]) -> None:
    _cases[f"{case.method} {case.path}"] += 1
    _phases[case.meta.phase.name.value if case.meta is not None else "explicit"] += 1
    case.call_and_validate(headers=admin, checks=CHECKS, timeout=30)

