"""`load_pipeline` under arbitrary input: a Pipeline or a PipelineError whose problems say where; nothing else.

Three sources of input: any text; any YAML document (nested mappings, lists and scalars); and the
shipped pipelines with one subtree replaced by an arbitrary value (the input that reaches the deep
checks: params, steps, `with`, templates, retries, cleanup).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import PipelineError, Problem
from agent.pipeline.spec import Pipeline, load_pipeline

PIPELINES = Path(__file__).parents[4] / "config" / "pipeline"
SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(PIPELINES.glob("*.yaml"))]

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = [f.alias or name for name, f in Pipeline.model_fields.items()]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from([
        "${params.image}", "${steps.pull.outputs.digest}", "${nope}", "${", "$${x}", "30s", "1h30m", "-1s",
        "image.pull", "container.run", "wait-tcp", "string", "integer", "secret", "gamenode/v1", "Pipeline",
    ]),
)
KEYS = st.one_of(
    st.text(max_size=12),
    st.sampled_from([
        "apiVersion", "kind", "metadata", "name", "params", "steps", "action", "with", "timeout", "retry",
        "attempts", "backoff", "when", "on_failure", "type", "default", "required", "secret", "image", "ports",
    ]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)


def check_outcome(text: str, document: Any = None) -> Pipeline | PipelineError:
    """Load `text`; any exception but PipelineError fails the test, and every problem must say where
    (for a mapping `document`: a path that starts at one of its keys or at a field it lacks)."""
    try:
        return load_pipeline(text, "fuzz.yaml")
    except PipelineError as exc:
        assert exc.problems, "a PipelineError with no problem"
        for problem in exc.problems:
            assert_well_formed(problem)
            if isinstance(document, dict) and document:
                assert_located(problem, document)
        return exc


def assert_well_formed(problem: Problem) -> None:
    assert isinstance(problem, Problem)
    assert isinstance(problem.message, str) and problem.message.strip(), problem
    assert isinstance(problem.path, str), problem
    if not problem.path:  # a problem with the whole document
        assert problem.line is not None or "empty" in problem.message or "YAML" in problem.message, problem
    assert problem.line is None or problem.line >= 1, problem
    assert problem.source == "fuzz.yaml", problem


def assert_located(problem: Problem, document: dict[Any, Any]) -> None:
    """The path's first part is a key of the document (as `_join` writes it) or a top-level field it lacks."""
    firsts = [f"[{k}]" if isinstance(k, int) and not isinstance(k, bool) else str(k) for k in document]
    assert any(problem.path.startswith(first) for first in [*firsts, *FIELDS]), problem


def dump(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


@SETTINGS
@given(st.one_of(st.text(), st.text(alphabet="abc:-[]{}#&*!|>'\"%@`,? \n\t$", max_size=60)))
def test_any_text_loads_or_fails_with_problems(text: str) -> None:
    check_outcome(text)


@SETTINGS
@given(VALUES)
def test_any_yaml_document_loads_or_fails_with_located_problems(document: Any) -> None:
    text = dump(document)
    check_outcome(text, yaml.safe_load(text))  # as read back: YAML folds some keys ('\x85' reads as ' ')


def _replace(tree: Any, draw: st.DrawFn) -> Any:
    """`tree` with one subtree (chosen by walking down at random) replaced by an arbitrary value."""
    if isinstance(tree, dict) and tree and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(tree, key=str)))
        if draw(st.booleans()):
            tree[key] = _replace(tree[key], draw)
        elif draw(st.booleans()):
            del tree[key]
        else:
            tree[key] = draw(VALUES)
        return tree
    if isinstance(tree, list) and tree and draw(st.booleans()):
        index = draw(st.integers(0, len(tree) - 1))
        tree[index] = _replace(tree[index], draw)
        return tree
    if isinstance(tree, dict) and draw(st.booleans()):
        tree[draw(KEYS)] = draw(VALUES)
        return tree
    return draw(VALUES)


@st.composite
def mutated_pipelines(draw: st.DrawFn) -> Any:
    tree = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        tree = _replace(tree, draw)
    return tree


@SETTINGS
@given(mutated_pipelines())
def test_a_shipped_pipeline_with_a_subtree_replaced_loads_or_fails_with_located_problems(document: Any) -> None:
    text = dump(document)
    check_outcome(text, yaml.safe_load(text))


def test_the_shipped_pipelines_load_as_they_are() -> None:
    """The mutation source itself is valid, so a failure above is the mutation's doing."""
    for document in SHIPPED:
        assert isinstance(check_outcome(dump(document)), Pipeline)
