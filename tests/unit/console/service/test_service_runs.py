"""RunService: validation, node checks, instance creation, agent events → run and instance states,
cancel, stop pipelines, secrets, and dispatching again after a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from console.errors import Conflict, InvalidInput, NotFound, Unavailable
from console.models import GameNode, InstanceState, PipelineRun, Resources, RunState, StepState
from console.service import RunEvent, RunService, Services
from console.service.launch import LaunchRequest, LaunchService
from console.store import Stores

S = InstanceState
HARDWARE = {"cpu": {"model": "EPYC", "cores": 8}, "memory_mb": 16384, "gpus": []}

START = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: start, instance: create}
params:
  image: {type: string, required: true}
  port: {type: integer, default: 8080}
  password: {type: string, default: "", secret: true}
steps:
  - name: pull
    action: image.pull
    with: {image: "${params.image}", password: "${params.password}"}
  - name: run
    action: container.run
    with: {image: "${params.image}"}
on_failure:
  - {name: cleanup, action: container.remove, with: {force: true}}
"""

STOP = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: stop, instance: stop}
params:
  container: {type: string, default: ""}
steps:
  - {name: stop, action: container.stop, with: {container: "${params.container}"}}
"""

UPGRADE = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata: {name: upgrade, instance: use}
params:
  image: {type: string, required: true}
steps:
  - {name: run, action: container.run, with: {image: "${params.image}", replace: true}}
"""

OUTPUTS = {"container_id": "c0ffee", "name": "gn-i1",
           "ports": [{"name": "game", "container_port": 8080, "host_port": 31000, "protocol": "tcp",
                      "host_ip": "0.0.0.0"}]}


@dataclass
class FakeDispatcher:
    """Records what would go to agents; `online` says which nodes are connected."""

    online: set[str] = field(default_factory=lambda: {"n1"})
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """(run id, params) of every RunPipeline."""
    cancels: list[tuple[str, str]] = field(default_factory=list)

    def connected(self, node_id: str) -> bool:
        return node_id in self.online

    def run_pipeline(self, run: PipelineRun, params: dict[str, Any]) -> None:
        self.sent.append((run.id, dict(params)))

    def cancel_run(self, run: PipelineRun, reason: str) -> None:
        self.cancels.append((run.id, reason))


@pytest.fixture
def agent() -> FakeDispatcher:
    return FakeDispatcher()


@pytest.fixture
def runs(services: Services, agent: FakeDispatcher, clock: Callable[[], Any]) -> RunService:
    services.runs.dispatcher = agent
    services.runs.clock = clock
    return services.runs


@pytest.fixture
def node(make_node: Callable[..., GameNode]) -> GameNode:
    return make_node("n1", hardware=HARDWARE)


def ev(run: PipelineRun | str, step: str = "", state: StepState = StepState.RUNNING, **fields: Any) -> RunEvent:
    return RunEvent(run_id=run if isinstance(run, str) else run.id, step=step, state=state, **fields)


def start(runs: RunService, yaml: str = START, **fields: Any) -> PipelineRun:
    params = fields.pop("params", {"image": "game/tiny:1"})
    return runs.start_request({"node_id": "n1", "yaml": yaml, "params": params, **fields}, "tester")


def feed(runs: RunService, *events: RunEvent) -> PipelineRun | None:
    result = None
    for event in events:
        result = runs.apply_event("n1", event)
    return result


# --- starting ---------------------------------------------------------------------------------------


def test_a_create_run_reserves_its_instance_and_is_dispatched(
    runs: RunService, services: Services, agent: FakeDispatcher, node: GameNode
) -> None:
    run = start(runs, params={"image": "game/tiny:1", "port": "9000", "password": "hunter2"},
                resources={"cpu": 2, "memory_mb": 4096}, reason="first launch")
    assert run.id.startswith("run-") and run.state == RunState.PENDING
    assert (run.pipeline, run.instance_mode, run.created_by, run.reason) == ("inline", "create", "tester",
                                                                             "first launch")
    assert run.params == {"image": "game/tiny:1", "port": 9000, "password": "***"}
    assert [(s.name, s.action, s.state) for s in run.steps] == [
        ("pull", "image.pull", StepState.PENDING), ("run", "container.run", StepState.PENDING)]

    instance = services.instances.get_instance(run.instance_id or "")
    assert (instance.state, instance.run_id, instance.node_id) == (S.PENDING, run.id, "n1")
    assert instance.resources == Resources(cpu=2, memory_mb=4096)
    assert services.instances.free("n1") == Resources(cpu=6, memory_mb=12288)
    assert instance.params["password"] == "***"

    assert agent.sent == [(run.id, {"image": "game/tiny:1", "port": 9000, "password": "hunter2"})]
    assert runs.get_run(run.id) == run
    assert runs.secret_store.get(run.id).params == {"password": "hunter2"}
    assert "hunter2" not in runs.runs.root.joinpath(f"{run.id}.yaml").read_text()


def test_a_run_from_the_catalog_keeps_its_name(runs: RunService, node: GameNode, tmp_path: Path) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "platform-start.yaml").write_text(START)
    runs.catalog.directory = tmp_path / "pipelines"
    run = runs.start("n1", pipeline="platform-start", params={"image": "x"}, created_by="launch")
    assert (run.pipeline, run.pipeline_yaml, run.created_by) == ("platform-start", START, "launch")
    with pytest.raises(NotFound, match="pipeline 'nope'"):
        runs.start("n1", pipeline="nope")


def test_an_invalid_pipeline_is_refused_with_paths_and_lines(runs: RunService, node: GameNode) -> None:
    bad = START.replace("action: image.pull", "action: image.pul").replace(
        'with: {image: "${params.image}"}', 'with: {imag: "${params.image}"}')
    with pytest.raises(InvalidInput) as caught:
        start(runs, bad)
    assert [(d.path, d.line) for d in caught.value.details] == [
        ("steps[0].action", 10), ("steps[1].with.imag", 14), ("steps[1].with.image", 14)]
    assert "(<inline>:10)" in caught.value.message
    assert runs.runs.list() == [] and runs.instances.instances.list() == []


def test_invalid_params_are_refused_with_their_paths(runs: RunService, node: GameNode) -> None:
    with pytest.raises(InvalidInput) as caught:
        start(runs, params={"port": "eighty", "colour": "red"})
    assert sorted(d.path for d in caught.value.details) == ["params.colour", "params.image", "params.port"]
    assert runs.instances.instances.list() == []


@pytest.mark.parametrize("fields", [{}, {"pipeline": "x", "yaml": START}])
def test_exactly_one_of_name_and_yaml(runs: RunService, node: GameNode, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="either `pipeline`"):
        runs.start_request({"node_id": "n1", **fields})


def test_the_node_must_exist_be_connected_and_not_in_maintenance(
    runs: RunService, services: Services, agent: FakeDispatcher, make_node: Callable[..., GameNode]
) -> None:
    with pytest.raises(NotFound, match="node 'n1'"):
        start(runs)
    make_node("n1", hardware=HARDWARE)
    agent.online.clear()
    with pytest.raises(Conflict, match="offline"):
        start(runs)
    agent.online.add("n1")
    services.nodes.update_node_status("n1", "maintenance", "disk swap on Tuesday")
    with pytest.raises(Conflict, match=r"maintenance.*\(disk swap on Tuesday\)"):
        start(runs)
    assert runs.runs.list() == []


def test_an_instance_that_does_not_fit_refuses_the_run(runs: RunService, node: GameNode) -> None:
    with pytest.raises(Conflict, match="not enough room"):
        start(runs, resources={"cpu": 64})
    assert runs.runs.list() == []


def test_without_a_dispatcher_runs_are_unavailable(services: Services, node: GameNode) -> None:
    with pytest.raises(Unavailable):
        start(services.runs)


def test_stop_and_use_pipelines_need_an_instance_on_that_node(
    runs: RunService, services: Services, node: GameNode, make_node: Callable[..., GameNode]
) -> None:
    with pytest.raises(InvalidInput, match="instance_id: required"):
        start(runs, STOP, params={})
    with pytest.raises(NotFound, match="instance 'ghost'"):
        start(runs, STOP, params={}, instance_id="ghost")
    make_node("n2", hardware=HARDWARE)
    services.instances.create_instance({"id": "elsewhere", "node_id": "n2"})
    with pytest.raises(Conflict, match="on node 'n2', not 'n1'"):
        start(runs, STOP, params={}, instance_id="elsewhere")


def test_a_pending_instance_reserved_by_a_caller_is_adopted(
    runs: RunService, services: Services, node: GameNode
) -> None:
    services.instances.create_instance({"id": "i1", "node_id": "n1", "resources": {"cpu": 1}})
    run = start(runs, instance_id="i1")
    assert services.instances.get_instance("i1").run_id == run.id
    with pytest.raises(Conflict, match="exists already"):
        start(runs, instance_id="i1")


# --- following the agent's events -------------------------------------------------------------------


def test_the_happy_path_brings_the_instance_up(runs: RunService, services: Services, node: GameNode) -> None:
    run = start(runs, params={"image": "x", "password": "pw"}, resources={"cpu": 1})
    iid = run.instance_id or ""
    assert runs.command_acked(run.id, True).state == RunState.DISPATCHED  # type: ignore[union-attr]
    assert run.id not in runs.secret_store  # the agent has them now

    running = feed(runs, ev(run))
    assert running is not None and running.state == RunState.RUNNING and running.started_at is not None
    assert services.instances.get_instance(iid).state == S.PREPARING

    feed(runs, ev(run, "pull", attempt=1, action="image.pull", progress=10, message="pulling"),
         ev(run, "pull", attempt=1, progress=60, message="60 of 100 MB"),
         ev(run, "pull", StepState.SUCCEEDED, attempt=1, outputs={"digest": "sha256:ab"}))
    pull = runs.get_run(run.id).step("pull")
    assert pull is not None and (pull.state, pull.progress, pull.outputs) == (
        StepState.SUCCEEDED, 100, {"digest": "sha256:ab"})

    feed(runs, ev(run, "run", attempt=1, action="container.run"))
    assert services.instances.get_instance(iid).state == S.STARTING
    done = feed(runs, ev(run, "run", StepState.SUCCEEDED, attempt=1, outputs=OUTPUTS),
                ev(run, "", StepState.SUCCEEDED))
    assert done is not None and done.state == RunState.SUCCEEDED and done.error is None
    instance = services.instances.get_instance(iid)
    assert (instance.state, instance.container_id) == (S.RUNNING, "c0ffee")
    assert [(p.name, p.container_port, p.host_port) for p in instance.ports] == [("game", 8080, 31000)]


def test_progress_is_kept_in_memory_not_written(runs: RunService, node: GameNode) -> None:
    run = start(runs)
    feed(runs, ev(run), ev(run, "pull", attempt=1, progress=5))
    writes: list[str] = []
    runs.runs.subscribe(lambda id, record: writes.append(id))
    seen: list[tuple[int, str]] = []
    runs.subscribe(lambda r: seen.append((r.steps[0].progress, r.steps[0].message)), run.id)

    for percent in range(10, 100, 10):
        feed(runs, ev(run, "pull", attempt=1, progress=percent, message=f"{percent}%"))
    assert writes == []
    assert seen[-1] == (90, "90%") and len(seen) == 9
    shown = runs.get_run(run.id).steps[0]
    assert (shown.progress, shown.message) == (90, "90%")
    assert runs.runs.get(run.id).steps[0].progress == 5  # what is on disk
    assert runs.list_runs({"node_id": "n1"}).items[0].steps[0].progress == 90

    feed(runs, ev(run, "pull", StepState.SUCCEEDED, attempt=1))
    assert writes == [run.id]


def test_a_failure_at_pull_fails_the_instance_and_releases_it(
    runs: RunService, services: Services, node: GameNode
) -> None:
    run = start(runs, resources={"cpu": 4, "memory_mb": 8192})
    assert services.instances.free("n1") == Resources(cpu=4, memory_mb=8192)
    reason = "pull access denied for game/tiny: repository does not exist"
    done = feed(runs, ev(run), ev(run, "pull", attempt=1),
                ev(run, "pull", StepState.FAILED, attempt=1, message=reason),
                ev(run, "cleanup", StepState.RUNNING, attempt=1, action="container.remove"),
                ev(run, "cleanup", StepState.SUCCEEDED, attempt=1),
                ev(run, "", StepState.FAILED, message=f"step pull failed: {reason}"))
    assert done is not None and done.state == RunState.FAILED and done.error == f"step pull failed: {reason}"
    cleanup = done.step("cleanup")
    assert cleanup is not None and cleanup.cleanup and cleanup.state == StepState.SUCCEEDED
    instance = services.instances.get_instance(run.instance_id or "")
    assert (instance.state, instance.error) == (S.FAILED, f"step pull failed: {reason}")
    assert services.instances.free("n1") == Resources(cpu=8, memory_mb=16384)


def test_a_failed_run_without_a_message_names_the_failed_step(
    runs: RunService, services: Services, node: GameNode
) -> None:
    run = start(runs)
    done = feed(runs, ev(run, "pull", StepState.FAILED, attempt=1, message="no such image"),
                ev(run, "", StepState.FAILED))
    assert done is not None and done.error == "step pull failed: no such image"
    assert services.instances.get_instance(run.instance_id or "").error == "step pull failed: no such image"


def test_retries_move_the_attempt_and_stale_events_are_ignored(runs: RunService, node: GameNode) -> None:
    run = start(runs)
    feed(runs, ev(run, "pull", attempt=1), ev(run, "pull", StepState.FAILED, attempt=1, message="timeout"),
         ev(run, "pull", attempt=2, message="retrying"))
    pull = runs.get_run(run.id).step("pull")
    assert pull is not None and (pull.state, pull.attempt, pull.finished_at) == (StepState.RUNNING, 2, None)
    feed(runs, ev(run, "pull", StepState.SUCCEEDED, attempt=2),
         ev(run, "pull", StepState.RUNNING, attempt=2, progress=50),  # late
         ev(run, "pull", StepState.FAILED, attempt=1))  # older attempt
    pull = runs.get_run(run.id).step("pull")
    assert pull is not None and (pull.state, pull.attempt, pull.progress) == (StepState.SUCCEEDED, 2, 100)


def test_events_after_the_end_and_from_other_nodes_change_nothing(
    runs: RunService, services: Services, node: GameNode
) -> None:
    run = start(runs)
    done = feed(runs, ev(run, "", StepState.SUCCEEDED))
    assert done is not None
    writes: list[str] = []
    runs.runs.subscribe(lambda id, record: writes.append(id))
    assert feed(runs, ev(run, "", StepState.FAILED), ev(run, "pull", StepState.RUNNING)) == done
    assert runs.apply_event("n2", ev(run, "", StepState.FAILED)) is None
    assert runs.apply_event("n1", ev("run-unknown")) is None
    assert runs.apply_event("n1", RunEvent(run_id=run.id, state=None)) == done
    assert writes == []


def test_an_agent_that_refuses_the_run_fails_it(runs: RunService, services: Services, node: GameNode) -> None:
    run = start(runs)
    failed = runs.command_acked(run.id, False, "pipelines are not supported by this agent")
    assert failed is not None and failed.state == RunState.FAILED
    assert failed.error == "the agent refused the run: pipelines are not supported by this agent"
    assert services.instances.get_instance(run.instance_id or "").state == S.FAILED
    assert runs.command_acked(run.id, True) == failed  # a late duplicate ack changes nothing


def test_an_event_before_the_ack_runs_the_run_and_the_ack_leaves_it_running(
    runs: RunService, node: GameNode
) -> None:
    run = start(runs)
    feed(runs, ev(run, "pull", attempt=1))
    acked = runs.command_acked(run.id, True)
    assert acked is not None and acked.state == RunState.RUNNING


# --- cancelling -----------------------------------------------------------------------------------


def test_cancel_sends_cancel_run_and_the_agent_ends_it(
    runs: RunService, services: Services, agent: FakeDispatcher, node: GameNode
) -> None:
    run = start(runs)
    feed(runs, ev(run), ev(run, "pull", attempt=1, progress=30))
    cancelling = runs.cancel(run.id, "wrong image", "ops")
    assert cancelling.state == RunState.CANCELLING and cancelling.cancel_reason == "wrong image"
    assert cancelling.steps[0].progress == 30
    assert agent.cancels == [(run.id, "wrong image")]
    assert runs.cancel(run.id) == cancelling and len(agent.cancels) == 1  # once

    done = feed(runs, ev(run, "pull", StepState.CANCELLED, attempt=1), ev(run, "", StepState.CANCELLED))
    assert done is not None and (done.state, done.error) == (RunState.CANCELLED, "wrong image")
    instance = services.instances.get_instance(run.instance_id or "")
    assert (instance.state, instance.error) == (S.FAILED, "its start was cancelled: wrong image")
    with pytest.raises(Conflict, match="is cancelled"):
        runs.cancel(run.id)


def test_a_run_that_finishes_before_the_cancel_took_keeps_its_outcome(
    runs: RunService, services: Services, node: GameNode
) -> None:
    run = start(runs)
    runs.cancel(run.id)
    done = feed(runs, ev(run, "run", StepState.SUCCEEDED, attempt=1, action="container.run", outputs=OUTPUTS),
                ev(run, "", StepState.SUCCEEDED))
    assert done is not None and done.state == RunState.SUCCEEDED
    assert services.instances.get_instance(run.instance_id or "").state == S.RUNNING


def test_a_cancel_the_agent_cannot_do_for_a_run_it_never_started(runs: RunService, node: GameNode) -> None:
    run = start(runs)
    runs.cancel(run.id, "changed my mind")
    done = runs.cancel_acked(run.id, False, "unknown run")
    assert done is not None and (done.state, done.error) == (RunState.CANCELLED, "changed my mind")


# --- instances that already exist ---------------------------------------------------------------------


def _running_instance(runs: RunService, services: Services) -> str:
    run = start(runs, resources={"cpu": 2})
    feed(runs, ev(run, "run", StepState.SUCCEEDED, attempt=1, action="container.run", outputs=OUTPUTS),
         ev(run, "", StepState.SUCCEEDED))
    iid = run.instance_id or ""
    assert services.instances.get_instance(iid).state == S.RUNNING
    return iid


def test_a_stop_pipeline_stops_and_releases_its_instance(
    runs: RunService, services: Services, node: GameNode
) -> None:
    iid = _running_instance(runs, services)
    run = start(runs, STOP, params={}, instance_id=iid)
    assert run.instance_mode == "stop"
    feed(runs, ev(run), ev(run, "stop", attempt=1))
    assert services.instances.get_instance(iid).state == S.RUNNING  # until the run succeeds
    feed(runs, ev(run, "stop", StepState.SUCCEEDED, attempt=1), ev(run, "", StepState.SUCCEEDED))
    assert services.instances.get_instance(iid).state == S.STOPPED
    assert services.instances.free("n1") == Resources(cpu=8, memory_mb=16384)


def test_a_failed_stop_or_use_run_leaves_the_instance_as_it_was(
    runs: RunService, services: Services, node: GameNode
) -> None:
    iid = _running_instance(runs, services)
    for yaml, params in ((STOP, {}), (UPGRADE, {"image": "game/tiny:2"})):
        run = start(runs, yaml, params=params, instance_id=iid)
        done = feed(runs, ev(run), ev(run, "", StepState.FAILED, message="docker is down"))
        assert done is not None and done.error == "docker is down"
        assert services.instances.get_instance(iid).state == S.RUNNING


def test_a_use_run_takes_the_new_container(runs: RunService, services: Services, node: GameNode) -> None:
    iid = _running_instance(runs, services)
    run = start(runs, UPGRADE, params={"image": "game/tiny:2"}, instance_id=iid)
    new = {**OUTPUTS, "container_id": "beef"}
    feed(runs, ev(run), ev(run, "run", attempt=1), ev(run, "run", StepState.SUCCEEDED, attempt=1, outputs=new),
         ev(run, "", StepState.SUCCEEDED))
    instance = services.instances.get_instance(iid)
    assert (instance.state, instance.container_id) == (S.RUNNING, "beef")


# --- listeners ------------------------------------------------------------------------------------------


def test_subscribe_current_sees_the_run_then_every_change(runs: RunService, node: GameNode) -> None:
    run = start(runs)
    seen: list[RunState] = []
    everything: list[str] = []
    unsubscribe = runs.subscribe(lambda r: seen.append(r.state), run.id, current=True)
    runs.subscribe(lambda r: everything.append(r.id))
    feed(runs, ev(run), ev(run, "", StepState.SUCCEEDED))
    unsubscribe()
    start(runs)
    assert seen == [RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED]
    assert everything[:2] == [run.id, run.id] and len(everything) == 3
    with pytest.raises(NotFound):
        runs.subscribe(lambda r: None, "run-nope", current=True)


def test_list_runs_filters_and_sorts_newest_first(runs: RunService, node: GameNode, clock: Any) -> None:
    first = start(runs)
    clock.advance(1)
    second = start(runs)
    feed(runs, ev(second, "", StepState.SUCCEEDED))
    assert [r.id for r in runs.list_runs().items] == [second.id, first.id]
    assert [r.id for r in runs.list_runs({"state": "succeeded"}).items] == [second.id]
    assert [r.id for r in runs.list_runs({"instance_id": first.instance_id}).items] == [first.id]
    page = runs.list_runs({"limit": 1})
    assert (len(page.items), page.total) == (1, 2)
    with pytest.raises(InvalidInput):
        runs.list_runs({"state": "bogus"})


# --- after a restart --------------------------------------------------------------------------------------


@pytest.fixture
def reopen(tmp_path: Path) -> Iterator[Callable[[], Services]]:
    opened: list[Stores] = []

    def open_services() -> Services:
        if opened:
            opened[-1].close()
        stores = Stores.open(tmp_path / "restart")
        opened.append(stores)
        return Services.over(stores)

    yield open_services
    opened[-1].close()


def test_a_restart_dispatches_unacked_runs_again_with_their_secrets(reopen: Callable[[], Services]) -> None:
    services = reopen()
    services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "hardware": HARDWARE})
    first = FakeDispatcher()
    services.runs.dispatcher = first
    pending = start(services.runs, params={"image": "x", "password": "hunter2"})
    acked = start(services.runs)
    services.runs.command_acked(acked.id, True)
    cancelling = start(services.runs)
    services.runs.command_acked(cancelling.id, True)
    services.runs.cancel(cancelling.id, "stop it")

    services = reopen()
    again = FakeDispatcher()
    services.runs.dispatcher = again
    assert services.runs.resume() == 2
    assert again.sent == [(pending.id, {"image": "x", "port": 8080, "password": "hunter2"})]
    assert again.cancels == [(cancelling.id, "stop it")]
    services.runs.command_acked(pending.id, True)
    assert pending.id not in services.runs.secret_store


def test_a_run_whose_secrets_were_lost_fails_with_the_reason(reopen: Callable[[], Services]) -> None:
    services = reopen()
    services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "hardware": HARDWARE})
    services.runs.dispatcher = FakeDispatcher()
    run = start(services.runs, params={"image": "x", "password": "hunter2"})
    (services.runs.secret_store.root / f"{run.id}.yaml").unlink()

    services = reopen()
    again = FakeDispatcher()
    services.runs.dispatcher = again
    assert services.runs.resume() == 0 and again.sent == []
    failed = services.runs.get_run(run.id)
    assert failed.state == RunState.FAILED and "secret params were not kept" in (failed.error or "")
    assert services.instances.get_instance(run.instance_id or "").state == S.FAILED


def test_secret_values_are_scrubbed_from_what_the_agent_reports(runs: RunService, node: GameNode) -> None:
    run = start(runs, params={"image": "x", "password": "hunter2"})
    done = feed(runs, ev(run, "pull", StepState.FAILED, attempt=1, message="login failed for hunter2"),
                ev(run, "", StepState.FAILED, message="step pull failed: login failed for hunter2"))
    assert done is not None and done.error == "step pull failed: login failed for ***"
    assert "hunter2" not in runs.runs.root.joinpath(f"{run.id}.yaml").read_text()


# --- launching through the real run service ------------------------------------------------------------------


def test_a_launch_runs_its_platforms_pipeline_for_the_instance_it_reserved(
    runs: RunService, services: Services, agent: FakeDispatcher, node: GameNode, tmp_path: Path
) -> None:
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "platform-start.yaml").write_text(START)
    (tmp_path / "pipelines" / "platform-stop.yaml").write_text(STOP)
    runs.catalog.directory = tmp_path / "pipelines"
    services.platforms.create_platform({"id": "docker", "name": "docker"})
    services.gamecards.create_card({"id": "tiny", "name": "tiny", "platform": "docker", "versions": [
        {"version": "1.0.0", "image": "game/tiny:1", "resources": {"cpu": 2, "memory_mb": 2048}}]})
    services.nodes.set_connected("n1", True, "agent connected")
    launcher = LaunchService.over(services, runs, is_online=agent.connected)

    launched = launcher.launch(LaunchRequest(game="tiny", params={"port": 9000}), created_by="ops")
    run = runs.get_run(launched.run_id)
    assert (run.instance_id, run.instance_mode, run.created_by) == (launched.instance.id, "create", "ops")
    assert launched.instance.run_id == run.id and launched.instance.resources == Resources(cpu=2, memory_mb=2048)
    assert agent.sent[-1][1]["image"] == "game/tiny:1" and agent.sent[-1][1]["port"] == 9000
    feed(runs, ev(run, "run", StepState.SUCCEEDED, attempt=1, action="container.run", outputs=OUTPUTS),
         ev(run, "", StepState.SUCCEEDED))
    assert services.instances.get_instance(launched.instance.id).state == S.RUNNING

    stopped = launcher.stop(launched.instance.id, created_by="ops")
    assert stopped.run_id is not None
    stop = runs.get_run(stopped.run_id)
    assert (stop.pipeline, stop.instance_mode, stop.params) == ("platform-stop", "stop", {"container": "c0ffee"})
    feed(runs, ev(stop, "", StepState.SUCCEEDED))
    assert services.instances.get_instance(launched.instance.id).state == S.STOPPED
    assert services.instances.reserved("n1") == Resources()


def test_busy_instances_are_those_with_a_run_still_going(runs: RunService, node: GameNode) -> None:
    run = start(runs)
    assert runs.busy_instances("n1") == {run.instance_id}
    assert runs.busy_instances("n2") == set()
    feed(runs, ev(run), ev(run, state=StepState.SUCCEEDED))
    assert runs.busy_instances("n1") == set()
