"""Secret params of platforms and game versions: `***` in what is answered, the real value stored and launched.

The rules: a key the platform's pipeline declares is secret when the pipeline
says so; any other key (no catalog, unknown pipeline, undeclared key) when its
name holds password, secret or token. A write giving a secret as `***` keeps
the stored value.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from console.errors import InvalidInput
from console.models import GameCard, GameNode, PipelineRun, Platform
from console.service import PipelineCatalog, SecretParams, Services
from console.service.launch import LaunchRequest, LaunchService

MakePlatform = Callable[..., Platform]
MakeCard = Callable[..., GameCard]

START = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: start, instance: create}
params:
  image: {type: string, required: true}
  rcon: {type: string, default: "", secret: true}
  api_token: {type: string, default: ""}
  port: {type: integer, default: 0}
steps:
  - {name: run, action: container.run, with: {image: "${params.image}"}}
"""


@pytest.fixture
def catalog(services: Services, tmp_path: Path) -> PipelineCatalog:
    """The run service's catalog: one pipeline `start` (rcon secret, api_token declared not secret)."""
    directory = tmp_path / "pipelines"
    directory.mkdir()
    (directory / "start.yaml").write_text(START)
    services.runs.catalog = PipelineCatalog(directory)
    return services.runs.catalog


# --- the rules --------------------------------------------------------------


def test_the_pipeline_decides_for_what_it_declares_the_name_rule_for_the_rest(catalog: PipelineCatalog) -> None:
    secrets = SecretParams(lambda: catalog)
    params = {"rcon": "r", "api_token": "t", "port": 1, "db_password": "p", "image": "x"}
    assert secrets.keys(params, "start") == {"rcon", "db_password"}
    assert secrets.keys(params, "ghost") == {"api_token", "db_password"}  # unknown pipeline: names only
    assert secrets.keys(params, "start", "ghost") == {"rcon", "api_token", "db_password"}


@pytest.mark.parametrize("source", [None, lambda: None])
def test_without_a_catalog_names_decide(source: Callable[[], PipelineCatalog | None] | None) -> None:
    params = {"Registry_PASSWORD": "a", "API_TOKEN": "b", "client_secret": "c", "user": "d", "empty_token": ""}
    assert SecretParams(source).redact(params, "platform-start") == {
        "Registry_PASSWORD": "***", "API_TOKEN": "***", "client_secret": "***", "user": "d", "empty_token": ""}


def test_an_invalid_pipeline_file_falls_back_to_names(services: Services, tmp_path: Path) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "start.yaml").write_text("kind: nonsense\n")
    secrets = SecretParams(lambda: PipelineCatalog(directory))
    assert secrets.keys({"rcon": "x", "token": "y"}, "start") == {"token"}


# --- platforms --------------------------------------------------------------


@pytest.mark.usefixtures("catalog")
def test_a_platform_is_answered_redacted_and_stored_as_given(services: Services, make_platform: MakePlatform) -> None:
    stored = make_platform("docker", pipeline="start",
                           params={"rcon": "r1", "api_token": "t1", "port": 9, "db_password": "p1"})
    shown = services.platforms.redacted(stored)
    assert shown.params == {"rcon": "***", "api_token": "t1", "port": 9, "db_password": "***"}
    assert services.platforms.get_platform("docker").params["rcon"] == "r1"
    assert services.platforms.redacted(make_platform("plain", params={"port": 1})).params == {"port": 1}


def test_writing_back_what_was_answered_keeps_the_secret(services: Services, make_platform: MakePlatform) -> None:
    make_platform("docker", params={"registry_password": "s3cret", "registry_username": "bob"})
    shown = services.platforms.redacted(services.platforms.get_platform("docker")).model_dump(mode="json")
    assert shown["params"] == {"registry_password": "***", "registry_username": "bob"}

    answer = services.platforms.update_platform("docker", {**shown, "description": "edited"})
    assert answer.description == "edited" and answer.params["registry_password"] == "s3cret"
    assert services.platforms.get_platform("docker").params["registry_password"] == "s3cret"

    services.platforms.update_platform("docker", {"params": {"registry_password": "n3w"}})
    assert services.platforms.get_platform("docker").params == {"registry_password": "n3w"}


def test_a_stars_value_with_nothing_stored_is_refused(services: Services, make_platform: MakePlatform) -> None:
    with pytest.raises(InvalidInput, match=r"params\.registry_password: \*\*\* keeps the stored value"):
        make_platform("docker", params={"registry_password": "***"})
    make_platform("docker", params={"port": 1})
    with pytest.raises(InvalidInput, match=r"params\.db_token"):
        services.platforms.update_platform("docker", {"params": {"db_token": "***"}})
    # not a secret: `***` is just a value
    assert services.platforms.update_platform("docker", {"params": {"motd": "***"}}).params == {"motd": "***"}


@pytest.mark.usefixtures("catalog")
def test_a_secret_of_the_old_pipeline_is_kept_when_the_pipeline_changes(
    services: Services, make_platform: MakePlatform
) -> None:
    make_platform("docker", pipeline="start", params={"rcon": "r1"})
    services.platforms.update_platform("docker", {"pipeline": "ghost", "params": {"rcon": "***"}})
    assert services.platforms.get_platform("docker").params == {"rcon": "r1"}


def test_records_are_written_owner_only(services: Services, make_platform: MakePlatform, make_card: MakeCard) -> None:
    make_platform("docker", params={"registry_password": "s3cret"})
    make_card("quake", platform="docker", versions=[{"version": "1.0.0", "image": "q:1",
                                                     "params": {"registry_password": "v"}}])
    root = services.platforms.platforms.root.parent
    for path in (root / "platforms" / "docker.yaml", root / "gamecards" / "quake.yaml"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- game cards -------------------------------------------------------------


@pytest.mark.usefixtures("catalog")
def test_versions_are_redacted_by_their_platforms_pipeline(
    services: Services, make_platform: MakePlatform, make_card: MakeCard
) -> None:
    make_platform("docker", pipeline="start")
    card = make_card("quake", platform="docker", versions=[
        {"version": "1.0.0", "image": "q:1", "params": {"rcon": "r1", "api_token": "t1"}},
        {"version": "2.0.0", "image": "q:2"},
    ])
    shown = services.gamecards.redacted(card)
    assert [v.params for v in shown.versions] == [{"rcon": "***", "api_token": "t1"}, {}]
    assert services.gamecards.redacted_version(card, card.versions[0]).params["rcon"] == "***"
    assert services.gamecards.get_card("quake").versions[0].params["rcon"] == "r1"
    lone = make_card("lone", versions=[{"version": "1.0.0", "image": "l:1", "params": {"rcon": "r", "api_token": "t"}}])
    assert services.gamecards.redacted(lone).versions[0].params == {"rcon": "r", "api_token": "***"}  # names


def test_a_card_written_back_keeps_each_versions_secret(
    services: Services, make_platform: MakePlatform, make_card: MakeCard
) -> None:
    make_platform("docker")
    make_card("quake", platform="docker", versions=[
        {"version": "1.0.0", "image": "q:1", "params": {"registry_password": "one"}},
        {"version": "2.0.0", "image": "q:2", "params": {"registry_password": "two"}},
    ])
    shown = services.gamecards.redacted(services.gamecards.get_card("quake")).model_dump(mode="json")
    assert {v["params"]["registry_password"] for v in shown["versions"]} == {"***"}

    shown["versions"].reverse()  # matched by version, not by place
    shown["versions"][0]["params"]["registry_password"] = "new-two"
    services.gamecards.update_card("quake", {**shown, "description": "edited"})
    stored = {v.version: v.params["registry_password"] for v in services.gamecards.get_card("quake").versions}
    assert stored == {"1.0.0": "one", "2.0.0": "new-two"}


def test_a_new_version_with_stars_is_refused(services: Services, make_platform: MakePlatform,
                                             make_card: MakeCard) -> None:
    make_platform("docker")
    make_card("quake", platform="docker", versions=[{"version": "1.0.0", "image": "q:1",
                                                     "params": {"registry_password": "one"}}])
    with pytest.raises(InvalidInput, match=r"params\.registry_password"):
        services.gamecards.add_version("quake", {"version": "1.1.0", "image": "q:1.1",
                                                 "params": {"registry_password": "***"}})
    with pytest.raises(InvalidInput, match=r"versions\[1\]\.params\.registry_password"):
        services.gamecards.update_card("quake", {"versions": [
            {"version": "1.0.0", "image": "q:1", "params": {"registry_password": "***"}},
            {"version": "1.1.0", "image": "q:1.1", "params": {"registry_password": "***"}},
        ]})
    assert services.gamecards.get_card("quake").versions[0].params == {"registry_password": "one"}


# --- launching --------------------------------------------------------------


class RecordingDispatcher:
    """Every node connected; records what RunPipeline would carry."""

    def __init__(self) -> None:
        self.sent: list[tuple[PipelineRun, dict[str, Any]]] = []

    def connected(self, node_id: str) -> bool:
        return True

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        self.sent.append((run, dict(params)))

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        pass


def test_a_launch_after_a_write_back_gets_the_real_values(
    services: Services, make_node: Callable[..., GameNode], make_platform: MakePlatform, make_card: MakeCard
) -> None:
    make_node("n1", status="ready", hardware={"cpu": {"cores": 4}, "memory_mb": 8192})
    make_platform("docker", params={"registry_password": "platform-pw", "registry_username": "bob"})
    make_card("quake", platform="docker", versions=[{"version": "1.0.0", "image": "q:1",
                                                     "params": {"registry_password": "version-pw"}}])
    platform = services.platforms.redacted(services.platforms.get_platform("docker")).model_dump(mode="json")
    card = services.gamecards.redacted(services.gamecards.get_card("quake")).model_dump(mode="json")
    services.platforms.update_platform("docker", platform)
    services.gamecards.update_card("quake", card)
    dispatcher = RecordingDispatcher()
    services.runs.dispatcher = dispatcher

    launched = LaunchService.over(services, services.runs, lambda node_id: True).launch(LaunchRequest(game="quake"))
    [(run, params)] = dispatcher.sent
    assert (params["registry_password"], params["registry_username"]) == ("version-pw", "bob")
    assert run.params["registry_password"] == "***" and launched.instance.params["registry_password"] == "***"
    assert services.runs.secret_store.get(run.id).params == {"registry_password": "version-pw"}
    assert services.platforms.get_platform("docker").params["registry_password"] == "platform-pw"
