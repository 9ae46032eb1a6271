"""No secret is written anywhere: a real hub, a real agent over mTLS, a real dockerd and registry.

The secrets of one ordinary day: the node's join token, an API token made over
REST and used, the local admin token, and a registry password given to a
launch as the secret param `registry_password` — which the pipeline renders
into the game's config file and the game prints on its stdout at start. Then
every file under the hub's data dir and the agent's state dir, both processes'
output, and the REST answers an operator reads (runs, instances, logs, audit)
are searched for each secret, whole and for its secret part alone.

What may hold a secret, by design, and is left out of the search:
- `DATA_DIR/admin.token`: it *is* the admin token (0600); the other files are still searched for it;
- the agent's run records `STATE_DIR/runs/*.json` (0600): the params of a run whose instance still lives,
  which the agent needs to resume it and to redact that instance's output;
- the instance's own data dir `STATE_DIR/instances/<id>/`: the config the operator asked the pipeline to
  render the password into, for the game.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import Fleet
from pipeline_helpers import Stage
from testbed.docker import GameImage

pytestmark = [pytest.mark.docker, pytest.mark.slow]

NODE = "sec-a"
GAME = ["sh", "-c", "cat /data/config/server.cfg; echo game is ready; sleep 2; cat /data/config/server.cfg; "
        "exec httpd -f -p 8080 -h /www"]
"""Prints its config (with the password) while the run waits for it, and again once the run is over."""


@pytest.fixture
def stage(tmp_path: Path, docker_client: Any, game_image: GameImage) -> Iterator[Stage]:
    fleet = Fleet(tmp_path)
    stage = Stage(fleet, docker_client)
    try:
        yield stage
    finally:
        stage.cleanup()
        fleet.close()


def _files(root: Path, leave_out: tuple[Path, ...]) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path == p or p in path.parents for p in leave_out):
            yield path


def _needles(token: str) -> list[str]:
    """The token and, for `ID.SECRET`, its secret part alone (a token cut in two must not leak either)."""
    secret = token.partition(".")[2]
    return [token, secret] if secret else [token]


def test_no_token_or_password_is_written_by_the_hub_or_the_agent(stage: Stage, game_image: GameImage) -> None:
    fleet = stage.fleet
    fleet.start_hub()
    admin = (fleet.data_dir / "admin.token").read_text().strip()
    join = fleet.add_node(NODE, location="lab")
    agent = fleet.start_agent(NODE, join)
    fleet.wait_online([NODE])
    stage.nodes.append(NODE)

    r = fleet.api.post("/api/v1/tokens", json={"name": "grafana", "role": "viewer"})
    assert r.status_code == 201, r.text
    viewer = r.json()["token"]
    r = fleet.api.get("/api/v1/nodes", headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200, r.text

    password = f"pw-{secrets.token_hex(12)}"
    card = stage.game(game_image.v1)
    r = fleet.api.post("/api/v1/instances", json={"game": card, "params": {
        "registry_username": "ci", "registry_password": password, "command": GAME, "health": "log",
        "health_log": "game is ready", "config_template": "password=${params.registry_password}\n"}})
    assert r.status_code == 201, r.text
    launched = r.json()
    instance_id = launched["instance"]["id"]
    run = stage.wait_run(launched["run_id"], "succeeded")
    stage.wait_instance(instance_id, "running")
    rendered = agent.state_dir / "instances" / instance_id / "config" / "server.cfg"
    assert rendered.read_text() == f"password={password}\n"  # the game got it...

    def printed_twice() -> list[dict[str, Any]] | None:
        lines = [e for e in stage.logs(node=NODE) if "password=" in e["text"]]
        return lines if len(lines) >= 2 else None

    printed = fleet.wait("the game's config printed in its run's and then its instance's logs", printed_twice)
    assert {e["source"] for e in printed} == {f"run:{run['id']}", f"instance:{instance_id}"}, printed
    assert all(e["text"] == "password=***" for e in printed), printed  # ...and printed it, redacted

    answers = {
        "run": str(run), "instance": str(stage.instance(instance_id)),
        "logs": str(stage.logs(node=NODE)), "audit": fleet.api.get("/api/v1/audit").text,
        "tokens": fleet.api.get("/api/v1/tokens").text,
    }
    fleet.hub.terminate()
    agent.terminate()

    found: list[str] = []
    searched = 0
    for root, leave_out in (
        (fleet.data_dir, (fleet.data_dir / "admin.token",)),
        (agent.state_dir, (agent.state_dir / "runs", agent.state_dir / "instances" / instance_id)),
        (fleet.root, (fleet.data_dir, agent.state_dir, agent.token_file)),  # the processes' output
    ):
        for path in _files(root, leave_out):
            data = path.read_bytes()
            searched += 1
            for name, token in (("join token", join), ("viewer token", viewer), ("password", password)):
                found += [f"{name} in {path}" for needle in _needles(token) if needle.encode() in data]
            if admin.encode() in data or admin.partition(".")[2].encode() in data:
                found.append(f"admin token in {path}")
    for what, text in answers.items():
        for name, token in (("join token", join), ("viewer token", viewer), ("password", password),
                            ("admin token", admin)):
            found += [f"{name} in the {what} answer" for needle in _needles(token) if needle in text]
    assert searched > 20, f"only {searched} files searched: the test lost its reach"
    assert not found, "\n".join(found)
