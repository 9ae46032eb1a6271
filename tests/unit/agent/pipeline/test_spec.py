"""`agent.pipeline.spec`: loading with every mistake (path and line), params, durations, step inputs."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import PipelineError, Problem
from agent.pipeline.inputs import ContainerRun, FileRender, ImagePull, NetworkEnsure
from agent.pipeline.spec import (
    DEFAULT_TIMEOUT,
    MAX_BACKOFF,
    Pipeline,
    Retry,
    Step,
    load_pipeline,
    parse_duration,
    step_inputs,
)

PIPELINES = Path(__file__).parents[4] / "config" / "pipeline"

HEAD = """\
apiVersion: gamenode/v1
kind: Pipeline
metadata:
  name: t
params:
  image: {type: string, required: true}
  port: {type: integer, default: 8080}
steps:
  - name: pull
    action: image.pull
    with:
      image: ${params.image}
"""  # 12 lines: a case's text starts at line 13


def problems_of(text: str, source: str = "t.yaml") -> list[Problem]:
    with pytest.raises(PipelineError) as caught:
        load_pipeline(text, source)
    return caught.value.problems


def scope(**params: Any) -> dict[str, Any]:
    return {"params": params, "steps": {}, "run": {"id": "r1"}, "instance": {"id": "i1", "data_dir": "/d"},
            "node": {"id": "n1"}}


# --- the shipped pipelines ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["platform-start", "platform-stop", "instance-upgrade"])
def test_the_shipped_pipelines_are_valid(name: str) -> None:
    path = PIPELINES / f"{name}.yaml"
    pipeline = load_pipeline(path.read_text(), path.name)
    assert pipeline.metadata.name == name
    assert pipeline.steps


def test_every_pipeline_in_config_is_valid() -> None:
    files = sorted(PIPELINES.glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        load_pipeline(path.read_text(), path.name)


def test_platform_start_runs_through_with_a_scope() -> None:
    pipeline = load_pipeline((PIPELINES / "platform-start.yaml").read_text())
    assert pipeline.metadata.instance == "create"
    params = pipeline.resolve_params({"image": "reg/game:1", "port": "9000", "registry_password": "pw",
                                      "config_template": "port=${params.port}"})
    assert params["port"] == 9000
    assert pipeline.secret_values(params) == ["pw"]
    env = scope(**params)
    ran = [step.name for step in pipeline.steps if _when(step, env)]
    assert ran == ["pull", "config", "network", "run", "wait-tcp"]
    env["steps"]["network"] = {"outputs": {"ports": [{"name": "game", "container_port": 9000, "host_port": 20001}],
                                           "port_game": 20001}}
    by_name = {step.name: step for step in pipeline.steps}
    pull = step_inputs(by_name["pull"], env)
    assert isinstance(pull, ImagePull) and pull.password == "pw"
    config = step_inputs(by_name["config"], env)
    assert isinstance(config, FileRender) and config.template == "port=9000"
    run = step_inputs(by_name["run"], env)
    assert isinstance(run, ContainerRun) and run.ports[0].host_port == 20001 and run.command == []
    assert by_name["wait-tcp"].timeout_in(env) == 120
    assert [step.name for step in pipeline.on_failure] == ["remove"]


def _when(step: Step, env: dict[str, Any]) -> bool:
    from agent.pipeline.template import evaluate_when

    return evaluate_when(step.when, env)


@pytest.mark.parametrize(("health", "wait"), [("tcp", "wait-tcp"), ("http", "wait-http"), ("log", "wait-log")])
def test_platform_start_picks_one_wait_step(health: str, wait: str) -> None:
    pipeline = load_pipeline((PIPELINES / "platform-start.yaml").read_text())
    env = scope(**pipeline.resolve_params({"image": "x", "health": health}))
    assert [s.name for s in pipeline.steps if s.name.startswith("wait-") and _when(s, env)] == [wait]


def test_instance_upgrade_rolls_back_from_every_step_after_the_stop() -> None:
    pipeline = load_pipeline((PIPELINES / "instance-upgrade.yaml").read_text())
    assert pipeline.metadata.instance == "use"
    assert pipeline.params["old_container"].required is False
    for step in pipeline.steps[pipeline.steps.index(next(s for s in pipeline.steps if s.name == "stop-old")):-1]:
        assert step.on_failure[-1].action == "container.restart", step.name
        assert step.on_failure[-1].with_ == {"container": "${params.old_container}"}


# --- mistakes: path and line ---------------------------------------------------------------------------------


CASES: list[tuple[str, str, int, str]] = [
    ("  - name: run\n    action: container.run\n    with:\n      name: x\n", "steps[1].with.image", 15,
     "field required"),
    ("  - name: run\n    action: container.run\n    with:\n      imag: x\n      image: x\n", "steps[1].with.imag", 16,
     "unknown input of container.run"),
    ("  - name: run\n    action: container.jump\n", "steps[1].action", 14, "unknown action"),
    ("  - name: w\n    action: container.wait\n    timeout: 5 minutes\n", "steps[1].timeout", 15, "not a duration"),
    ("  - name: w\n    action: container.wait\n    timeout: 0\n", "steps[1].timeout", 15, "greater than 0"),
    ("  - name: w\n    action: container.wait\n    timeout: -5s\n", "steps[1].timeout", 15, "not a duration"),
    ("  - name: w\n    action: container.wait\n    retry:\n      attempts: 0\n", "steps[1].retry.attempts", 16,
     "greater than or equal to 1"),
    ("  - name: w\n    action: container.wait\n    retry: {backoff: later}\n", "steps[1].retry.backoff", 15,
     "not a duration"),
    ("  - name: w\n    action: container.wait\n    retry: {tries: 2}\n", "steps[1].retry.tries", 15,
     "unknown field (allowed: attempts, backoff)"),
    ("  - name: pull\n    action: container.wait\n", "steps[1].name", 13, "duplicate step name 'pull'"),
    ("  - name: Run!\n    action: container.wait\n", "steps[1].name", 13, "should match pattern"),
    ("  - action: container.wait\n", "steps[1].name", 13, "field required"),
    ("  - name: w\n    action: container.wait\n    retries: 3\n", "steps[1].retries", 15, "unknown field"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${params.img}\n", "steps[1].with.image", 16,
     "${params.img}: no such param"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${steps.run.outputs.image}\n",
     "steps[1].with.image", 16, "step 'run' does not run before this one"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${steps.later.outputs.image}\n",
     "steps[1].with.image", 16, "no step named 'later'"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${steps.pull.image}\n",
     "steps[1].with.image", 16, "write ${steps.<step>.outputs.<key>}"),
    ("  - name: run\n    action: container.run\n    with:\n      image: x\n      name: ${run.name}\n",
     "steps[1].with.name", 17, "${run.name}: unknown name"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${vars.x}\n", "steps[1].with.image", 16,
     "vars are only for file.render"),
    ("  - name: run\n    action: container.run\n    with:\n      image: ${params.image\n", "steps[1].with.image", 16,
     "unterminated"),
    ("  - name: run\n    action: container.run\n    with:\n      image: x\n      env:\n        A: ${nope}\n",
     "steps[1].with.env.A", 18, "${nope}: unknown name"),
    ("  - name: w\n    action: container.wait\n    when: ${params.health} == tcp\n", "steps[1].when", 15,
     "${params.health}: no such param"),
    ("  - name: w\n    action: container.wait\n    timeout: ${params.t}\n", "steps[1].timeout", 15,
     "${params.t}: no such param"),
    ("  - name: s\n    action: container.stop\n    with: {grace: soon}\n", "steps[1].with.grace", 15,
     "valid number"),
    ("  - name: n\n    action: network.ensure\n    with:\n      ports:\n        - {name: g, container_port: 1}\n"
     "        - {container_port: 0}\n", "steps[1].with.ports[1].container_port", 18, "greater than or equal to 1"),
    ("  - name: n\n    action: network.ensure\n    with:\n      ports:\n        - {container_port: 81}\n"
     "        - {container_port: 80, colour: red}\n", "steps[1].with.ports[1].colour", 18, "unknown"),
    ("  - name: f\n    action: file.render\n    with:\n      dest: a\n      vars: {a: 1}\n      template: ${vars.b}\n",
     "steps[1].with.template", 18, "${vars.b}: no such entry"),
    ("  - name: w\n    action: container.wait\n    with: [1]\n", "steps[1].with", 15, "valid dictionary"),
    ("  - name: w\n    action: container.wait\n    on_failure:\n      - name: c\n        action: container.remove\n"
     "        on_failure: [{name: d, action: container.remove}]\n", "steps[1].on_failure[0].on_failure", 18,
     "cleanup step has no on_failure"),
    ("  - name: w\n    action: container.wait\n    on_failure:\n      - name: w\n        action: container.remove\n",
     "steps[1].on_failure[0].name", 16, "duplicate step name 'w'"),
    ("  - name: w\n    action: container.wait\n    on_failure:\n      - name: c\n        action: container.remove\n"
     "        with: {container: '${steps.w.outputs.container_id}'}\n", "steps[1].on_failure[0].with.container", 18,
     "step 'w' does not run before this one"),
    ("on_failure:\n  - name: c\n    action: container.remove\n    with: {container: '${steps.x.outputs.id}'}\n",
     "on_failure[0].with.container", 16, "no step named 'x'"),
    ("  - 42\n", "steps[1]", 13, "valid dictionary"),
    ("  - name: sh\n    action: shell\n    with: {command: 5}\n", "steps[1].with.command", 15,
     "valid list; or input should be a valid string"),
    ("colour: red\n", "colour", 13, "unknown field (allowed: apiVersion, kind, metadata, params, steps, on_failure)"),
    ("  - name: d\n    action: data.fetch\n    with: {source: x, sha256: abc}\n", "steps[1].with.sha256", 15,
     "should match pattern"),
    ("  - name: d\n    action: data.fetch\n    with: {source: x, sha256: ''}\n    when: yes\n", "", 0, ""),
]


@pytest.mark.parametrize(("body", "path", "line", "message"), CASES, ids=[f"{c[1] or 'valid'}-{i}"
                                                                          for i, c in enumerate(CASES)])
def test_a_mistake_is_reported_with_its_path_and_line(body: str, path: str, line: int, message: str) -> None:
    if not path:
        load_pipeline(HEAD + body)
        return
    problems = problems_of(HEAD + body)
    assert [(p.path, p.line) for p in problems] == [(path, line)], problems
    assert message in problems[0].message
    assert str(problems[0]) == f"{path}: {problems[0].message} (t.yaml:{line})"


PARAM_CASES: list[tuple[str, str, int, str]] = [
    ("  x: {type: string, required: true, default: a}\n", "params.x.default", 6, "required param takes no default"),
    ("  x: {type: integer, default: '8080'}\n", "params.x.default", 6, "not of type integer"),
    ("  x: {type: integer, default: true}\n", "params.x.default", 6, "not of type integer"),
    ("  x: {type: number, default: [1]}\n", "params.x.default", 6, "not of type number"),
    ("  x: {type: boolean, default: 'no'}\n", "params.x.default", 6, "not of type boolean"),
    ("  x: {type: list, default: a}\n", "params.x.default", 6, "not of type list"),
    ("  x: {type: object, default: []}\n", "params.x.default", 6, "not of type object"),
    ("  x: {type: string, default: '${run.id}'}\n", "params.x.default", 6, "not a template"),
    ("  x: {type: string, default: c, choices: [a, b]}\n", "params.x.default", 6, "not one of the choices"),
    ("  x: {type: int}\n", "params.x.type", 6, "Input should be"),
    ("  x: {type: string, secret: maybe}\n", "params.x.secret", 6, "valid boolean"),
    ("  x: {type: string, hidden: true}\n", "params.x.hidden", 6, "unknown field (allowed: type, required"),
    ("  Port: {type: integer}\n", "params.Port", 6, "invalid param name 'Port'"),
    ("  x: 3\n", "params.x", 6, "valid dictionary"),
]


@pytest.mark.parametrize(("param", "path", "line", "message"), PARAM_CASES)
def test_a_param_mistake_is_reported_with_its_path_and_line(param: str, path: str, line: int, message: str) -> None:
    text = f"metadata: {{name: t}}\nsteps:\n  - name: w\n    action: container.wait\nparams:\n{param}"
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [(path, line)], problems
    assert message in problems[0].message


@pytest.mark.parametrize(("text", "path", "line", "message"), [
    ("kind: Pipeline\nsteps: [{name: a, action: shell, with: {command: x}}]\n", "metadata", 1, "field required"),
    ("apiVersion: gamenode/v2\nmetadata: {name: t}\nsteps: [{name: a, action: shell, with: {command: x}}]\n",
     "apiVersion", 1, "gamenode/v1"),
    ("kind: Job\nmetadata: {name: t}\nsteps: [{name: a, action: shell, with: {command: x}}]\n", "kind", 1, "Pipeline"),
    ("metadata: {name: t}\nsteps: []\n", "steps", 2, "at least 1 item"),
    ("metadata: {name: t, instance: maybe}\nsteps: [{name: a, action: shell, with: {command: x}}]\n",
     "metadata.instance", 1, "'create'"),
    ("metadata: {name: t}\nsteps: [{name: a, action: shell, with: {command: x}}]\nsteps: []\n", "steps", 3,
     "duplicate key"),
])
def test_document_level_mistakes(text: str, path: str, line: int, message: str) -> None:
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [(path, line)], problems
    assert message in problems[0].message


@pytest.mark.parametrize(("text", "message", "line"), [
    ("", "empty", None),
    ("# nothing\n", "empty", None),
    ("- a\n- b\n", "not a list", 1),
    ("just words\n", "not a str", 1),
    ("metadata: {name: t\nsteps: []\n", "invalid YAML", 2),
    ("a: b\n  c: d\n", "invalid YAML", 2),
    ("a: 1\n---\nb: 2\n", "invalid YAML", 2),
    ("a: !!python/object:os.system x\n", "invalid YAML", 1),
])
def test_unusable_documents_are_one_clear_problem(text: str, message: str, line: int | None) -> None:
    problems = problems_of(text)
    assert len(problems) == 1
    assert message in problems[0].message
    assert problems[0].line == line


def test_every_mistake_is_reported_at_once_in_line_order() -> None:
    text = textwrap.dedent("""\
        apiVersion: gamenode/v1
        kind: Pipeline
        metadata: {name: t}
        params:
          image: {type: string, required: true, default: x}
          Bad: {type: string}
        steps:
          - name: pull
            action: image.pull
            with: {image: "${params.image}", tag: latest}
            timeout: forever
          - name: run
            action: container.run
            with:
              ports: ${steps.network.outputs.ports}
              env: {A: "${params.nope}"}
          - name: pull
            action: container.wait
            retry: {attempts: 0}
        on_failure:
          - {name: cleanup, action: container.nuke}
    """)
    problems = problems_of(text, "platform-start.yaml")
    assert [(p.path, p.line) for p in problems] == [
        ("params.image.default", 5),
        ("params.Bad", 6),
        ("steps[0].with.tag", 10),
        ("steps[0].timeout", 11),
        ("steps[1].with.image", 14),
        ("steps[1].with.ports", 15),
        ("steps[1].with.env.A", 16),
        ("steps[2].name", 17),
        ("steps[2].retry.attempts", 19),
        ("on_failure[0].action", 21),
    ]
    assert str(problems[4]) == "steps[1].with.image: field required (platform-start.yaml:14)"
    assert all(p.source == "platform-start.yaml" for p in problems)


def test_a_template_value_counts_as_present_and_is_checked_later() -> None:
    text = HEAD + "  - name: s\n    action: container.stop\n    with: {grace: '${params.image}'}\n"
    pipeline = load_pipeline(text)
    with pytest.raises(PipelineError) as caught:
        step_inputs(pipeline.steps[1], scope(image="soon"))
    assert caught.value.problems[0].path == "steps.s.with.grace"
    assert step_inputs(pipeline.steps[1], scope(image="2.5")).model_dump()["grace"] == 2.5


def test_step_fields_and_defaults() -> None:
    pipeline = load_pipeline(HEAD + "  - name: w\n    action: container.wait\n    when: 'yes'\n"
                                    "    timeout: 1h30m\n    retry: {attempts: 3, backoff: 250ms}\n")
    pull, wait = pipeline.steps
    assert pull.timeout == DEFAULT_TIMEOUT and pull.retry == Retry() and pull.when is None
    assert pull.with_ == {"image": "${params.image}"}
    assert wait.timeout == 5400 and wait.retry.attempts == 3 and wait.retry.backoff == 0.25
    assert wait.when == "yes"
    assert list(pipeline.all_steps()) == [pull, wait]
    assert pipeline.model_dump(by_alias=True)["steps"][0]["with"] == {"image": "${params.image}"}


def test_scalar_when_becomes_text() -> None:
    pipeline = load_pipeline(HEAD + "    when: true\n")
    assert pipeline.steps[0].when == "true"


def test_retry_delay_doubles_up_to_the_cap() -> None:
    retry = Retry(attempts=10, backoff=2)
    assert [retry.delay(n) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, MAX_BACKOFF, MAX_BACKOFF]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1h", 3600), ("1.5h", 5400), ("1m30s500ms", 90.5),
    (" 2s ", 2), ("10", 10), ("0.5", 0.5), (7, 7), (2.5, 2.5), ("0s", 0),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5", "5 m", "m5", "1d", "5mm", "-1s", "-3", "1h-30m", "nan", "inf", True,
                                  None, [1]])
def test_parse_duration_refuses(text: Any) -> None:
    if text == "5":
        assert parse_duration(text) == 5
        return
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_templated_timeout_is_rendered_when_the_step_runs() -> None:
    text = HEAD.replace("  port:", "  wait: {type: string, default: 2m}\n  port:") + "    timeout: ${params.wait}\n"
    step = load_pipeline(text).steps[0]
    assert step.timeout_template == "${params.wait}"
    assert step.timeout_in(scope(wait="90s")) == 90
    assert step.timeout_in(scope(wait=5)) == 5
    for bad in ("soon", "0"):
        with pytest.raises(PipelineError) as caught:
            step.timeout_in(scope(wait=bad))
        assert caught.value.problems[0].path == "steps.pull.timeout"


# --- params ------------------------------------------------------------------------------------------------


def _params_pipeline() -> Pipeline:
    return load_pipeline(textwrap.dedent("""\
        metadata: {name: p}
        params:
          image: {type: string, required: true}
          port: {type: integer, default: 8080}
          ratio: {type: number}
          debug: {type: boolean, default: false}
          command: {type: list, default: []}
          env: {type: object, default: {A: "1"}}
          health: {type: string, default: tcp, choices: [tcp, http]}
          password: {type: string, default: "", secret: true}
          token: {type: string, secret: true, default: s3cret}
        steps: [{name: a, action: shell, with: {command: x}}]
    """))


def test_resolve_params_fills_defaults() -> None:
    pipeline = _params_pipeline()
    assert pipeline.resolve_params({"image": "x"}) == {
        "image": "x", "port": 8080, "ratio": 0.0, "debug": False, "command": [], "env": {"A": "1"},
        "health": "tcp", "password": "", "token": "s3cret",
    }


def test_resolve_params_defaults_are_copies() -> None:
    pipeline = _params_pipeline()
    pipeline.resolve_params({"image": "x"})["env"]["B"] = "2"
    assert pipeline.resolve_params({"image": "x"})["env"] == {"A": "1"}


@pytest.mark.parametrize(("name", "given", "expected"), [
    ("port", "8080", 8080), ("port", 8080.0, 8080), ("port", " 42 ", 42), ("ratio", "1.5", 1.5), ("ratio", 2, 2.0),
    ("debug", "yes", True), ("debug", "false", False), ("debug", 1, True), ("image", 5, "5"),
    ("command", "sh -c 'echo hi'", ["sh", "-c", "echo hi"]), ("command", ("a",), ["a"]), ("health", "http", "http"),
])
def test_resolve_params_coerces(name: str, given: Any, expected: Any) -> None:
    values = _params_pipeline().resolve_params({"image": "x", name: given})
    assert values[name] == expected
    assert type(values[name]) is type(expected)


@pytest.mark.parametrize(("name", "given", "message"), [
    ("port", "80x", "expected an integer"), ("port", True, "expected an integer"), ("port", 1.5, "expected an integer"),
    ("ratio", "fast", "expected a number"), ("ratio", "nan", "expected a number"), ("debug", "perhaps", "a boolean"),
    ("debug", 2, "a boolean"), ("image", None, "expected a string, got null"), ("image", ["x"], "a string"),
    ("command", 3, "a list"), ("env", "A=1", "an object"), ("health", "log", "not one of tcp, http"),
])
def test_resolve_params_refuses_the_wrong_type(name: str, given: Any, message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        _params_pipeline().resolve_params({"image": "x", name: given})
    assert [p.path for p in caught.value.problems] == [f"params.{name}"]
    assert message in caught.value.problems[0].message


def test_resolve_params_reports_every_problem_at_once() -> None:
    with pytest.raises(PipelineError) as caught:
        _params_pipeline().resolve_params({"port": "x", "colour": "red"})
    problems = {p.path: p.message for p in caught.value.problems}
    assert problems.keys() == {"params.colour", "params.port", "params.image"}
    assert problems["params.image"] == "required param missing"
    assert "unknown param" in problems["params.colour"]
    assert "params.image: required param missing" in str(caught.value)


def test_secret_values() -> None:
    pipeline = _params_pipeline()
    assert pipeline.secret_values(pipeline.resolve_params({"image": "x"})) == ["s3cret"]
    assert pipeline.secret_values(pipeline.resolve_params({"image": "x", "password": "pw"})) == ["pw", "s3cret"]


_INVALID_NAMES = st.one_of(
    st.from_regex(r"[A-Z][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[0-9][a-z0-9_]{0,8}", fullmatch=True),
    st.from_regex(r"[a-z_][a-z0-9_]{0,4}[-. A-Z!@#$%][a-z0-9_]{0,4}", fullmatch=True),
)


@given(_INVALID_NAMES)
def test_every_invalid_param_name_is_refused(name: str) -> None:
    steps = "steps: [{name: a, action: container.stop}]\n"
    text = f"metadata: {{name: t}}\nparams:\n  {name!r}: {{type: string}}\n{steps}"
    problems = problems_of(text)
    assert [(p.path, p.line) for p in problems] == [(f"params.{name}", 3)]


@given(st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True))
def test_every_valid_param_name_is_accepted(name: str) -> None:
    text = f"metadata: {{name: t}}\nparams:\n  {name}: {{type: string}}\nsteps: [{{name: a, action: container.wait}}]\n"
    assert name in load_pipeline(text).params


# --- step inputs at run time -----------------------------------------------------------------------------------


def test_step_inputs_keeps_types_and_validates() -> None:
    step = Step.model_validate({"name": "n", "action": "network.ensure",
                                "with": {"ports": [{"name": "game", "container_port": "${params.port}"}]}})
    inputs = step_inputs(step, scope(port=8080))
    assert isinstance(inputs, NetworkEnsure) and inputs.ports[0].container_port == 8080
    with pytest.raises(PipelineError) as caught:
        step_inputs(step, scope(port=0))
    assert caught.value.problems[0].path == "steps.n.with.ports[0].container_port"
    with pytest.raises(PipelineError) as caught:
        step_inputs(step, scope())
    assert caught.value.problems[0].path == "steps.n.with.ports[0].container_port"
    assert "'port' is missing" in caught.value.problems[0].message


def test_file_render_templates_see_vars_and_a_param_holding_the_template() -> None:
    inline = Step.model_validate({"name": "f", "action": "file.render", "with": {
        "dest": "a.cfg", "vars": {"who": "${params.name}"}, "template": "hi ${vars.who} on ${node.id} $${keep}"}})
    rendered = step_inputs(inline, scope(name="bob"))
    assert isinstance(rendered, FileRender) and rendered.template == "hi bob on n1 ${keep}"
    indirect = Step.model_validate({"name": "f", "action": "file.render",
                                    "with": {"dest": "a.cfg", "template": "${params.text}"}})
    rendered = step_inputs(indirect, scope(text="port=${params.port} run=${run.id}", port=7))
    assert isinstance(rendered, FileRender) and rendered.template == "port=7 run=r1"
