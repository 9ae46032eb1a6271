"""`agent.pipeline.template`: substitution, escapes, references, truthiness and `when`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import PipelineError
from agent.pipeline.template import evaluate_when, format_value, has_template, lookup, references, render, truthy

SCOPE: dict[str, Any] = {
    "params": {"port": 8080, "name": "tiny", "on": True, "off": False, "cmd": ["a", "b"], "env": {"A": "1"},
               "none": None, "empty": "", "ratio": 1.5},
    "steps": {"network": {"outputs": {"ports": [{"name": "game", "host_port": 20001}], "port_game": 20001}}},
    "run": {"id": "r1"},
    "instance": {"id": "i1", "data_dir": "/srv/i1"},
    "node": {"id": "n1"},
}


@pytest.mark.parametrize(("template", "expected"), [
    ("${params.port}", 8080),
    ("${ params.port }", 8080),
    ("${params.on}", True),
    ("${params.cmd}", ["a", "b"]),
    ("${params.env}", {"A": "1"}),
    ("${params.none}", None),
    ("${steps.network.outputs.ports}", [{"name": "game", "host_port": 20001}]),
    ("${steps.network.outputs.ports.0.host_port}", 20001),
    ("${instance.data_dir}", "/srv/i1"),
])
def test_a_lone_reference_keeps_its_type(template: str, expected: Any) -> None:
    assert render(template, SCOPE) == expected


@pytest.mark.parametrize(("template", "expected"), [
    ("port ${params.port}", "port 8080"),
    ("${params.name}-${run.id}", "tiny-r1"),
    ("gn-${instance.id}-${run.id}", "gn-i1-r1"),
    ("on=${params.on} off=${params.off}", "on=true off=false"),
    ("[${params.none}]", "[]"),
    ("cmd=${params.cmd}", 'cmd=["a","b"]'),
    ("env=${params.env}", 'env={"A":"1"}'),
    ("x${params.ratio}", "x1.5"),
    (" ${params.port}", " 8080"),
])
def test_references_inside_text_are_formatted(template: str, expected: str) -> None:
    assert render(template, SCOPE) == expected


@pytest.mark.parametrize(("template", "expected"), [
    ("$${params.port}", "${params.port}"),
    ("$${HOME} and ${params.port}", "${HOME} and 8080"),
    ("$$${params.port}", "$${params.port}"),  # a lone `$`, then the escape
    ("cost: $5, $HOME, {x}", "cost: $5, $HOME, {x}"),
    ("$${", "${"),
])
def test_escapes(template: str, expected: str) -> None:
    assert render(template, SCOPE) == expected


def test_render_walks_dicts_and_lists_and_leaves_other_values() -> None:
    value = {"a": ["${params.port}", {"b": "${run.id}"}], "n": 3, "f": None, "t": ("${node.id}",)}
    assert render(value, SCOPE) == {"a": [8080, {"b": "r1"}], "n": 3, "f": None, "t": ["n1"]}


def test_substituted_values_are_not_rendered_again() -> None:
    scope = {"params": {"x": "${run.id}"}}
    assert render("${params.x}", scope) == "${run.id}"
    assert render("a ${params.x}", scope) == "a ${run.id}"


@pytest.mark.parametrize(("template", "path", "missing"), [
    ("${params.nope}", "with.image", "nope"),
    ("x ${steps.run.outputs.id}", "with.image", "run"),
    ("${steps.network.outputs.ports.5.host_port}", "with.port", "5"),
])
def test_a_missing_value_raises_with_the_path(template: str, path: str, missing: str) -> None:
    with pytest.raises(PipelineError) as caught:
        render({"k": template}, SCOPE, path)
    problem = caught.value.problems[0]
    assert problem.path == f"{path}.k"
    assert f"'{missing}' is missing" in problem.message


@pytest.mark.parametrize("template", ["${params.port", "a ${ } b", "${params..x}", "${1abc}", "${a b}"])
def test_malformed_references_are_errors(template: str) -> None:
    with pytest.raises(PipelineError):
        references(template)
    with pytest.raises(PipelineError):
        render(template, SCOPE)


def test_references_collects_every_name() -> None:
    value = {"a": "${params.x} ${run.id}", "b": ["${steps.s.outputs.k}", "$${not.me}"], "c": 1}
    assert references(value) == {"params.x", "run.id", "steps.s.outputs.k"}
    assert references("plain") == set()
    assert has_template({"a": ["${x}"]})
    assert not has_template({"a": ["$${x}", 1, None]})


def test_lookup_walks_mappings_and_lists() -> None:
    assert lookup(SCOPE, "steps.network.outputs.ports.0.name") == "game"
    with pytest.raises(PipelineError, match="'ports' is missing"):
        lookup({"steps": {}}, "steps.ports")


@pytest.mark.parametrize(("value", "expected"), [
    ("", False), ("false", False), ("False", False), (" no ", False), ("0", False), ("null", False),
    ("off", False), (False, False), (0, False), (0.0, False), (None, False), ([], False), ({}, False),
    ("x", True), ("true", True), ("yes", True), (" 1", True), (True, True), (1, True), (-1, True), ([0], True),
    ({"a": 1}, True), ("http://example.com", True),
])
def test_truthy(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


@pytest.mark.parametrize(("expr", "expected"), [
    (None, True),
    (True, True),
    (False, False),
    ("${params.name}", True),
    ("${params.empty}", False),
    ("${params.none}", False),
    ("${params.off}", False),
    ("${params.port}", True),
    ("${params.name} == tiny", True),
    ("${params.name}==tiny", True),
    ("${params.name} == 'tiny'", True),
    ('${params.name} == " tiny "', True),
    ("${params.name} != tiny", False),
    ("${params.name} == big", False),
    ("${params.port} == 8080", True),
    ("${params.on} == true", True),
    ("${params.empty} == ''", True),
    ("${params.empty} != ''", False),
    ("prefix-${params.name}", True),
])
def test_evaluate_when(expr: str | bool | None, expected: bool) -> None:
    assert evaluate_when(expr, SCOPE) is expected


def test_evaluate_when_reports_a_missing_value() -> None:
    with pytest.raises(PipelineError) as caught:
        evaluate_when("${params.nope} == x", SCOPE, "steps[1].when")
    assert caught.value.problems[0].path == "steps[1].when"


def test_format_value() -> None:
    assert [format_value(v) for v in ("s", None, True, 3, 2.5, [1], {"a": 1})] == ["s", "", "true", "3", "2.5",
                                                                                   "[1]", '{"a":1}']


@given(st.text().filter(lambda text: "${" not in text))
def test_render_without_a_template_is_identity(text: str) -> None:
    assert render(text, {}) == text
    assert references(text) == set()


@given(st.recursive(
    st.none() | st.booleans() | st.integers() | st.text().filter(lambda text: "${" not in text),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
))
def test_render_of_template_free_structures_is_identity(value: Any) -> None:
    assert render(value, {}) == value
