"""`agent.pipeline.engine.PipelineRunner` with a fake action registry: order, when, timeouts, retries,
cleanup, cancel, secrets, progress, persistence and resuming after a restart."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict

from agent.errors import StepFailed
from agent.pipeline.context import StepContext
from agent.pipeline.engine import RESUMED, PipelineRunner
from agent.pipeline.runs import RunRecord, RunStore, StepRecord
from agent.settings import AgentSettings
from proto import gamenode_pb2 as pb

WAIT = 10.0
Behaviour = Callable[[StepContext, Any], Awaitable[dict[str, Any]]]
S = pb.StepState


class Sink:
    """Records events and log lines; checks that each step state was persisted before its event."""

    def __init__(self, store: RunStore | None = None) -> None:
        self.events: list[pb.PipelineEvent] = []
        self.chunks: list[pb.LogChunk] = []
        self.store = store
        self.unpersisted: list[str] = []
        self.order: list[str] = []
        """"event <step> <STATE>" and "log <text>", in emission order."""

    def emit_pipeline_event(self, event: pb.PipelineEvent) -> int:
        self.events.append(event)
        self.order.append(f"event {event.step} {S.Name(event.state).removeprefix('STEP_STATE_')}")
        if self.store is not None and event.step and event.state != S.STEP_STATE_PENDING:
            record = self.store.load(event.run_id)
            saved = record.steps.get(event.step, StepRecord()).state
            if saved.upper() != S.Name(event.state).removeprefix("STEP_STATE_"):
                self.unpersisted.append(f"{event.step}: {saved} vs {S.Name(event.state)}")
        return len(self.events)

    def emit_log(self, chunk: pb.LogChunk) -> int:
        self.chunks.append(chunk)
        self.order.extend(f"log {line.text}" for line in chunk.lines)
        return len(self.chunks)

    @property
    def lines(self) -> list[str]:
        return [line.text for chunk in self.chunks for line in chunk.lines]

    def states(self, step: str) -> list[str]:
        return [S.Name(e.state).removeprefix("STEP_STATE_") for e in self.events if e.step == step]

    def last(self, step: str = "") -> pb.PipelineEvent:
        return [e for e in self.events if e.step == step][-1]


class Actions(dict[str, Behaviour]):
    """A fake ACTION_RUNNERS: every action dispatches on the step name (default: succeed with no outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: dict[str, Behaviour] = {}
        self.calls: list[tuple[str, Any]] = []
        for name in ("image.pull", "shell", "container.remove", "container.stop", "container.run", "data.fetch"):
            self[name] = self._dispatch

    async def _dispatch(self, ctx: StepContext, inputs: Any) -> dict[str, Any]:
        self.calls.append((ctx.step, inputs))
        behaviour = self.steps.get(ctx.step)
        return {} if behaviour is None else await behaviour(ctx, inputs)

    def called(self) -> list[str]:
        return [step for step, _ in self.calls]


class FakePorts:
    def __init__(self) -> None:
        self.released: list[str] = []

    def release(self, owner: str) -> list[int]:
        self.released.append(owner)
        return []


def _yaml(body: str, instance: str = "none", params: str = "") -> str:
    head = f"apiVersion: gamenode/v1\nkind: Pipeline\nmetadata: {{name: test, instance: {instance}}}\n"
    return head + (textwrap.dedent(params) if params else "") + textwrap.dedent(body)


THREE = _yaml("""
steps:
  - {name: pull, action: image.pull, with: {image: "game:1"}}
  - {name: data, action: shell, with: {command: "fetch"}}
  - {name: run, action: shell, with: {command: "run ${steps.pull.outputs.digest}"}}
""")


class Harness:
    def __init__(self, tmp_path: Path, actions: Actions | None = None, clock: Callable[[], float] | None = None):
        self.settings = AgentSettings(hub="hub:1", node_id="n1", token="t", state_dir=tmp_path, insecure=True)
        self.store = RunStore(tmp_path / "runs")
        self.sink = Sink(self.store)
        self.actions = actions or Actions()
        self.actions.steps.setdefault("pull", _returns({"digest": "sha256:0"}))
        self.ports = FakePorts()
        extra: dict[str, Any] = {"clock": clock} if clock else {}
        self.runner = PipelineRunner(self.sink, self.settings, None, self.ports,  # type: ignore[arg-type]
                                     actions=self.actions, store=self.store, **extra)

    async def run(self, yaml_text: str, params: dict[str, Any] | None = None, run_id: str = "r1",
                  instance_id: str = "") -> pb.PipelineEvent:
        outcome = self.runner.start(run_id, yaml_text, params or {}, instance_id)
        assert outcome.ok, outcome.error
        await asyncio.wait_for(self.runner.wait(run_id), WAIT)
        return self.sink.last()

    def restarted(self) -> Harness:
        """A new runner on the same state dir (an agent restart)."""
        other = Harness.__new__(Harness)
        other.settings, other.store, other.actions, other.ports = self.settings, self.store, self.actions, self.ports
        other.sink = Sink(self.store)
        other.runner = PipelineRunner(other.sink, self.settings, None, self.ports,  # type: ignore[arg-type]
                                      actions=self.actions, store=self.store)
        return other


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def _returns(outputs: dict[str, Any]) -> Behaviour:
    async def behaviour(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        return outputs

    return behaviour


def _fails(message: str) -> Behaviour:
    async def behaviour(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        raise StepFailed(message)

    return behaviour


def _blocks(started: asyncio.Event, seen: list[str] | None = None) -> Behaviour:
    async def behaviour(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if seen is not None:
                seen.append(ctx.step)
            raise
        return {}

    return behaviour


# --- order, outputs, when --------------------------------------------------------------------------------------


async def test_steps_run_in_order_and_outputs_feed_later_steps(h: Harness) -> None:
    h.actions.steps["pull"] = _returns({"digest": "sha256:abc", "bytes": 12, "pulled": True})
    final = await h.run(THREE)
    assert (final.state, final.message) == (S.STEP_STATE_SUCCEEDED, "")
    assert h.actions.called() == ["pull", "data", "run"]
    assert h.actions.calls[2][1].command == "run sha256:abc"
    assert h.sink.states("") == ["RUNNING", "SUCCEEDED"]
    assert h.sink.states("pull") == ["RUNNING", "SUCCEEDED"]
    done = h.sink.last("pull")
    assert MessageToDict(done.outputs) == {"digest": "sha256:abc", "bytes": 12, "pulled": True}
    assert (done.attempt, done.action, done.progress) == (1, "image.pull", 100)
    assert h.sink.unpersisted == []
    record = h.store.load("r1")
    assert (record.state, record.phase) == ("succeeded", "done")
    assert record.steps["pull"].outputs["digest"] == "sha256:abc"


async def test_a_step_whose_when_is_false_is_skipped(h: Harness) -> None:
    yaml_text = _yaml("""
    steps:
      - {name: data, action: shell, when: "${params.url}", with: {command: x}}
      - {name: run, action: shell, when: "${params.url} == ''", with: {command: y}}
    """, params="params: {url: {type: string, default: ''}}\n")
    final = await h.run(yaml_text)
    assert final.state == S.STEP_STATE_SUCCEEDED
    assert h.sink.states("data") == ["SKIPPED"]
    assert h.actions.called() == ["run"]


async def test_start_returns_before_the_first_step_runs(h: Harness) -> None:
    outcome = h.runner.start("r1", THREE, {}, "")
    assert outcome.ok
    assert h.actions.calls == []
    assert h.store.load("r1").state == "running"  # accepted and persisted
    await h.runner.wait("r1")


# --- failures, timeouts, retries, cleanup ------------------------------------------------------------------------


async def test_a_step_timeout_fails_the_step_and_the_run(h: Harness) -> None:
    h.actions.steps["pull"] = _blocks(asyncio.Event())
    final = await h.run(_yaml("""
    steps:
      - {name: pull, action: image.pull, timeout: 50ms, with: {image: x}}
      - {name: run, action: shell, with: {command: y}}
    """))
    assert h.sink.last("pull").message == "timed out after 0.05 s"
    assert (final.state, final.message) == (S.STEP_STATE_FAILED, "step 'pull' failed: timed out after 0.05 s")
    assert h.sink.states("run") == ["CANCELLED"]
    assert h.actions.called() == ["pull"]


async def test_retries_report_the_attempt_and_log_each_error(h: Harness) -> None:
    tries: list[int] = []

    async def flaky(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        tries.append(1)
        if len(tries) < 3:
            raise StepFailed(f"registry hiccup {len(tries)}")
        return {"ok": True}

    h.actions.steps["pull"] = flaky
    final = await h.run(_yaml("""
    steps:
      - {name: pull, action: image.pull, retry: {attempts: 3, backoff: 1ms}, with: {image: x}}
    """))
    assert final.state == S.STEP_STATE_SUCCEEDED
    running = [e.attempt for e in h.sink.events if e.step == "pull" and e.state == S.STEP_STATE_RUNNING]
    assert running == [1, 2, 3]
    assert h.sink.last("pull").attempt == 3
    retries = [line for line in h.sink.lines if "retrying" in line]
    assert len(retries) == 2
    assert "attempt 1 of 3 failed: registry hiccup 1" in retries[0]


async def test_a_failure_runs_the_steps_cleanup_then_the_pipelines(h: Harness) -> None:
    h.actions.steps["run"] = _fails("port taken")
    h.actions.steps["remove-failed"] = _fails("cleanup broke too")
    final = await h.run(_yaml("""
    steps:
      - {name: pull, action: image.pull, with: {image: x}}
      - name: run
        action: container.run
        with: {image: x}
        on_failure: [{name: remove-failed, action: container.remove, with: {force: true}}]
      - {name: wait, action: shell, with: {command: w}}
    on_failure:
      - {name: cleanup, action: container.remove, with: {}}
    """))
    assert h.actions.called() == ["pull", "run", "remove-failed", "cleanup"]
    assert (final.state, final.message) == (S.STEP_STATE_FAILED, "step 'run' failed: port taken")
    assert h.sink.states("remove-failed") == ["RUNNING", "FAILED"]
    assert h.sink.states("cleanup") == ["RUNNING", "SUCCEEDED"]
    assert h.sink.states("wait") == ["CANCELLED"]
    assert any("cleanup step 'remove-failed' failed: cleanup broke too" in line for line in h.sink.lines)
    assert h.sink.unpersisted == []


async def test_cleanup_steps_have_their_own_timeout(h: Harness) -> None:
    h.actions.steps["pull"] = _fails("no such image")
    h.actions.steps["slow-cleanup"] = _blocks(asyncio.Event())
    final = await h.run(_yaml("""
    steps:
      - {name: pull, action: image.pull, with: {image: x}}
    on_failure:
      - {name: slow-cleanup, action: container.remove, timeout: 20ms, with: {}}
      - {name: cleanup, action: container.remove, with: {}}
    """))
    assert h.sink.last("slow-cleanup").message == "timed out after 0.02 s"
    assert h.sink.states("cleanup") == ["RUNNING", "SUCCEEDED"]
    assert final.message == "step 'pull' failed: no such image"


async def test_bad_inputs_after_substitution_fail_the_step(h: Harness) -> None:
    h.actions.steps["pull"] = _returns({"port": "not-a-port"})
    final = await h.run(_yaml("""
    steps:
      - {name: pull, action: image.pull, with: {image: x}}
      - {name: stop, action: container.stop, with: {grace: "${steps.pull.outputs.port}"}}
    """))
    assert final.state == S.STEP_STATE_FAILED
    assert final.message.startswith("step 'stop' failed: steps.stop.with.grace")


async def test_an_unexpected_exception_fails_the_step_with_its_text(h: Harness) -> None:
    async def broken(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        raise RuntimeError("bug in action")

    h.actions.steps["pull"] = broken
    final = await h.run(THREE)
    assert final.message == "step 'pull' failed: RuntimeError: bug in action"


# --- cancel ------------------------------------------------------------------------------------------------------


async def test_cancel_stops_the_running_step_then_cleans_up(h: Harness) -> None:
    started, seen = asyncio.Event(), []
    h.actions.steps["data"] = _blocks(started, seen)
    yaml_text = THREE.replace('{name: data, action: shell, with: {command: "fetch"}}',
                              '{name: data, action: shell, with: {command: "fetch"}, on_failure: '
                              '[{name: undo-data, action: shell, with: {command: u}}]}')
    yaml_text += "on_failure:\n  - {name: cleanup, action: container.remove, with: {}}\n"
    assert h.runner.start("r1", yaml_text, {}, "").ok
    await asyncio.wait_for(started.wait(), WAIT)
    outcome = h.runner.cancel("r1", "operator changed their mind")
    assert outcome.ok
    await asyncio.wait_for(h.runner.wait("r1"), WAIT)
    assert seen == ["data"]  # the action saw CancelledError
    assert h.sink.states("data") == ["RUNNING", "CANCELLED"]
    assert h.sink.states("run") == ["CANCELLED"]
    assert h.actions.called() == ["pull", "data", "undo-data", "cleanup"]
    final = h.sink.last()
    assert (final.state, final.message) == (S.STEP_STATE_CANCELLED, "operator changed their mind")
    assert h.store.load("r1").state == "cancelled"
    assert h.sink.unpersisted == []


async def test_cancel_of_an_unknown_or_finished_run_is_refused(h: Harness) -> None:
    unknown = h.runner.cancel("nope", "x")
    assert (unknown.ok, unknown.error) == (False, "unknown run nope")
    await h.run(THREE)
    finished = h.runner.cancel("r1", "x")
    assert (finished.ok, finished.error) == (False, "run r1 already finished (succeeded)")


# --- refusing a run ---------------------------------------------------------------------------------------------


async def test_a_bad_pipeline_fails_the_run_at_once(h: Harness) -> None:
    outcome = h.runner.start("r1", "apiVersion: gamenode/v1\nkind: Pipeline\nsteps: []\n", {}, "")
    assert not outcome.ok
    assert "metadata" in outcome.error
    final = h.sink.last()
    assert (final.state, final.message) == (S.STEP_STATE_FAILED, outcome.error)
    assert h.store.load("r1").state == "failed"
    assert h.runner.start("r1", THREE, {}, "").error == "run r1 already known"
    assert h.actions.calls == []


async def test_bad_params_fail_the_run_with_every_problem(h: Harness) -> None:
    yaml_text = _yaml("steps:\n  - {name: pull, action: image.pull, with: {image: '${params.image}'}}\n",
                      params="params: {image: {type: string, required: true}, port: {type: integer}}\n")
    outcome = h.runner.start("r1", yaml_text, {"port": "http"}, "")
    assert not outcome.ok
    assert "params.image: required param missing" in outcome.error
    assert "params.port: expected an integer" in outcome.error


async def test_a_known_run_id_never_runs_again(h: Harness) -> None:
    await h.run(THREE)
    again = h.runner.start("r1", THREE, {}, "")
    assert (again.ok, again.error) == (True, "run r1 already known")
    await h.runner.wait("r1")
    assert h.actions.called() == ["pull", "data", "run"]
    restarted = h.restarted()
    assert restarted.runner.start("r1", THREE, {}, "").error == "run r1 already known"
    assert restarted.runner.resume_unfinished() == []


async def test_an_invalid_run_id_is_refused(h: Harness) -> None:
    outcome = h.runner.start("../etc", THREE, {}, "")
    assert not outcome.ok and "invalid run id" in outcome.error


# --- secrets and progress ---------------------------------------------------------------------------------------


async def test_secrets_never_leave_the_run(h: Harness) -> None:
    async def leaky(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        ctx.log(f"logging in with {inputs.password}")
        ctx.progress(50.0, f"auth {inputs.password}")
        return {"echo": inputs.password}

    async def failing(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        raise StepFailed("denied for hunter2")

    h.actions.steps["pull"] = leaky
    h.actions.steps["run"] = failing
    yaml_text = _yaml("""
    steps:
      - {name: pull, action: image.pull, with: {image: x, password: "${params.pw}"}}
      - {name: run, action: shell, with: {command: "x"}}
    """, params="params: {pw: {type: string, secret: true}}\n")
    final = await h.run(yaml_text, {"pw": "hunter2"})
    assert final.message == "step 'run' failed: denied for ***"
    everything = "".join(str(e) for e in h.sink.events) + "".join(str(c) for c in h.sink.chunks)
    assert "hunter2" not in everything
    assert "logging in with ***" in h.sink.lines
    assert "hunter2" not in json.dumps(h.store.load("r1").steps["run"].message)


async def test_progress_is_rate_limited_but_0_and_100_always_go_out(tmp_path: Path) -> None:
    now = [0.0]

    async def chatty(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        for pct in range(101):
            ctx.progress(float(pct), f"{pct} %")  # the fake clock stands still: one window
        now[0] += 1.0
        ctx.progress(100.0, "again")
        return {}

    actions = Actions()
    actions.steps["pull"] = chatty
    h = Harness(tmp_path, actions, clock=lambda: now[0])
    await h.run(THREE)
    progress = [(e.progress, e.message) for e in h.sink.events if e.step == "pull" and e.state == S.STEP_STATE_RUNNING]
    assert progress == [(0, ""), (0, "0 %"), (100, "100 %"), (100, "again")]


async def test_progress_from_a_thread_arrives(h: Harness) -> None:
    async def threaded(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        await asyncio.to_thread(ctx.progress, 100.0, "from a thread")
        await asyncio.to_thread(ctx.log, "a line from a thread", "info", "stdout")
        await asyncio.sleep(0.01)
        return {}

    h.actions.steps["pull"] = threaded
    await h.run(THREE)
    assert (100, "from a thread") in [(e.progress, e.message) for e in h.sink.events if e.step == "pull"]
    assert "a line from a thread" in h.sink.lines


# --- restarts ---------------------------------------------------------------------------------------------------


async def test_a_run_interrupted_by_a_restart_resumes_at_its_step(h: Harness) -> None:
    started = asyncio.Event()
    h.actions.steps["pull"] = _returns({"digest": "sha256:d1"})
    h.actions.steps["data"] = _blocks(started)
    assert h.runner.start("r1", THREE, {}, "").ok
    await asyncio.wait_for(started.wait(), WAIT)
    await h.runner.close()  # the agent stops mid-step
    record = h.store.load("r1")
    assert (record.state, record.steps["data"].state) == ("running", "running")

    h.actions.steps["data"] = _returns({})
    restarted = h.restarted()
    assert restarted.runner.resume_unfinished() == ["r1"]
    await asyncio.wait_for(restarted.runner.wait("r1"), WAIT)
    assert h.actions.called() == ["pull", "data", "data", "run"]  # pull is not run again
    assert h.actions.calls[-1][1].command == "run sha256:d1"  # with the stored outputs
    assert RESUMED in restarted.sink.lines
    assert restarted.sink.last().state == S.STEP_STATE_SUCCEEDED
    assert restarted.sink.states("pull") == []


async def test_a_restart_during_cleanup_finishes_the_cleanup(h: Harness) -> None:
    yaml_text = THREE + "on_failure:\n  - {name: c1, action: container.remove, with: {}}\n" \
                        "  - {name: c2, action: container.remove, with: {}}\n"
    record = RunRecord("r1", yaml_text, phase="cleanup", ending="failed", message="step 'data' failed: boom",
                       cleanup=["c1", "c2"])
    record.steps = {"pull": StepRecord("succeeded", 1), "data": StepRecord("failed", 1, message="boom"),
                    "run": StepRecord("pending"), "c1": StepRecord("succeeded", 1)}
    h.store.save(record)
    assert h.runner.resume_unfinished() == ["r1"]
    await asyncio.wait_for(h.runner.wait("r1"), WAIT)
    assert h.actions.called() == ["c2"]
    final = h.sink.last()
    assert (final.state, final.message) == (S.STEP_STATE_FAILED, "step 'data' failed: boom")
    assert h.sink.states("run") == ["CANCELLED"]


async def test_an_unreadable_record_fails_its_run(h: Harness) -> None:
    h.store.directory.joinpath("r9.json").write_text("{not json")
    assert h.runner.resume_unfinished() == []
    final = h.sink.last()
    assert final.run_id == "r9" and final.state == S.STEP_STATE_FAILED
    assert "could not be read after an agent restart" in final.message
    assert h.store.load("r9").state == "failed"
    assert (h.store.directory / "r9.json.corrupt").exists()


async def test_a_record_whose_pipeline_no_longer_loads_is_failed(h: Harness) -> None:
    h.store.save(RunRecord("r2", "kind: Nonsense\n"))
    assert h.runner.resume_unfinished() == []
    assert h.sink.last().message.startswith("cannot resume after an agent restart: ")
    assert h.store.load("r2").state == "failed"


# --- ports ------------------------------------------------------------------------------------------------------


async def test_ports_are_released_when_a_stop_pipeline_succeeds(h: Harness) -> None:
    await h.run(_yaml("steps:\n  - {name: stop, action: container.stop, with: {}}\n", instance="stop"),
                instance_id="inst-1")
    assert h.ports.released == ["inst-1"]


async def test_ports_are_released_when_a_create_pipeline_fails(h: Harness) -> None:
    h.actions.steps["pull"] = _fails("nope")
    await h.run(_yaml("steps:\n  - {name: pull, action: image.pull, with: {image: x}}\n", instance="create"),
                instance_id="inst-2")
    assert h.ports.released == ["inst-2"]


async def test_ports_are_kept_when_a_create_pipeline_succeeds(h: Harness) -> None:
    await h.run(_yaml("steps:\n  - {name: pull, action: image.pull, with: {image: x}}\n", instance="create"),
                instance_id="inst-3")
    assert h.ports.released == []


async def test_the_context_names_the_instance_and_its_data_dir(h: Harness) -> None:
    seen: list[StepContext] = []

    async def look(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        seen.append(ctx)
        return {}

    h.actions.steps["pull"] = look
    await h.run(THREE, instance_id="inst-4")
    ctx = seen[0]
    assert (ctx.run_id, ctx.step, ctx.node_id, ctx.instance_id) == ("r1", "pull", "n1", "inst-4")
    assert ctx.data_dir == h.settings.state_dir / "instances" / "inst-4" and ctx.data_dir.is_dir()
    assert ctx.allow_shell is False


async def test_a_steps_log_lines_are_sent_before_its_end(h: Harness) -> None:
    async def chatty(ctx: StepContext, inputs: Any) -> dict[str, Any]:
        ctx.log("pulled layer 1")
        return {"digest": "sha256:1"}

    h.actions.steps["pull"] = chatty
    await h.run(THREE)
    order = h.sink.order
    assert order.index("log pulled layer 1") < order.index("event pull SUCCEEDED")
    assert order.index("log run succeeded") < order.index("event  SUCCEEDED")
