"""Property tests: selectors against a reference, and the node and instance state machines.

Every example that touches services opens fresh stores (`fresh_services`): function-scoped
fixtures are not reset between hypothesis examples.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from console.errors import Conflict, InvalidInput
from console.models import InstanceState, NodeStatus, Resources
from console.service import Services
from console.service.selector import Op, Requirement, Selector

FreshServices = Callable[[], AbstractContextManager[Services]]

SETTINGS = settings(max_examples=75, deadline=None)

# --- selectors --------------------------------------------------------------

KEYS = st.one_of(
    st.sampled_from(["a", "b", "region", "example.com/role", "in", "notin"]),
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._/-]{0,10}[A-Za-z0-9])?", fullmatch=True),
)
VALUES = st.one_of(
    st.sampled_from(["", "1", "eu", "us"]),
    st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9._-]{0,8}[A-Za-z0-9])?)?", fullmatch=True),
)
LABELS = st.dictionaries(KEYS, VALUES, max_size=6)

Req = tuple[str, str, tuple[str, ...]]

REQUIREMENTS: st.SearchStrategy[Req] = st.one_of(
    st.tuples(KEYS, st.sampled_from(["=", "!="]), st.tuples(VALUES)),
    st.tuples(KEYS, st.sampled_from(["exists", "!"]), st.just(())),
    st.tuples(KEYS, st.sampled_from(["in", "notin"]), st.lists(VALUES, min_size=1, max_size=4).map(tuple)),
)


def reference_matches(reqs: list[Req], labels: dict[str, str]) -> bool:
    """Kubernetes semantics, written out plainly."""
    for key, op, values in reqs:
        present = key in labels
        value = labels.get(key)
        if op == "=":
            ok = present and value == values[0]
        elif op == "!=":
            ok = not present or value != values[0]
        elif op == "exists":
            ok = present
        elif op == "!":
            ok = not present
        elif op == "in":
            ok = present and value in values
        else:
            ok = not present or value not in values
        if not ok:
            return False
    return True


def selector_of(reqs: list[Req]) -> Selector:
    return Selector(tuple(Requirement(key, Op(op), values) for key, op, values in reqs))


def render(reqs: list[Req], spaces: Callable[[], str]) -> str:
    """The selector as text, with arbitrary blanks wherever the grammar allows them."""

    def one(key: str, op: str, values: tuple[str, ...]) -> str:
        s = spaces
        match op:
            case "=" | "!=":
                token = op if op == "!=" else ("==" if s() else "=")
                return f"{key}{s()}{token}{s()}{values[0]}"
            case "exists":
                return key
            case "!":
                return f"!{s()}{key}"
        listed = f"{s()},{s()}".join(values)
        return f"{key} {s()}{op}{s()}({s()}{listed}{s()})"

    return spaces() + f"{spaces()},{spaces()}".join(one(*r) for r in reqs) + spaces()


@SETTINGS
@given(st.lists(REQUIREMENTS, max_size=6), st.lists(LABELS, min_size=1, max_size=5))
def test_selector_parses_its_own_text_and_matches_like_the_reference(
    reqs: list[Req], label_sets: list[dict[str, str]]
) -> None:
    sel = selector_of(reqs)

    parsed = Selector.parse(str(sel))

    assert parsed == sel
    for labels in label_sets:
        assert parsed.matches(labels) is reference_matches(reqs, labels)


@SETTINGS
@given(st.lists(REQUIREMENTS, max_size=6), st.data())
def test_selector_text_may_carry_blanks_between_tokens(reqs: list[Req], data: st.DataObject) -> None:
    text = render(reqs, lambda: data.draw(st.sampled_from(["", " ", "   "])))

    assert Selector.parse(text) == selector_of(reqs)


@st.composite
def edited_selectors(draw: st.DrawFn) -> str:
    """A valid selector's text with one character inserted, deleted or replaced: nearly right."""
    text = str(selector_of(draw(st.lists(REQUIREMENTS, min_size=1, max_size=4))))
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from("=!,() inotx.-/\t\"é"))
    edit = draw(st.sampled_from(["insert", "delete", "replace"]))
    if edit == "insert":
        return text[:at] + char + text[at:]
    return text[:at] + (char if edit == "replace" else "") + text[at + 1 :]


_COLUMN = re.compile(r", column (\d+): \S")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="ab1=!,() inotx.-/", max_size=24), edited_selectors()))
def test_selector_parse_refuses_nonsense_only_with_invalid_input(text: str) -> None:
    try:
        sel = Selector.parse(text)
    except InvalidInput as exc:
        columns = _COLUMN.findall(str(exc))  # where, then what (the last: the text itself may hold one)
        assert columns, str(exc)
        assert 1 <= int(columns[-1]) <= len(text) + 1, str(exc)
    else:
        assert Selector.parse(str(sel)) == sel  # whatever parses prints back to itself


# --- node status machine ----------------------------------------------------

OFF, ON, READY, MAINT = NodeStatus.OFFLINE, NodeStatus.ONLINE, NodeStatus.READY, NodeStatus.MAINTENANCE
NODE_TABLE = {OFF: {ON, MAINT}, ON: {READY, OFF, MAINT}, READY: {ON, OFF, MAINT}, MAINT: {OFF, ON, READY}}
STATUS_NAMES = {s.value for s in NodeStatus}


@SETTINGS
@given(
    st.sampled_from(list(NodeStatus)),
    st.lists(
        st.tuples(st.sampled_from([*NodeStatus, "sleeping"]), st.sampled_from(["", " ", "why"])), max_size=25
    ),
)
def test_node_status_follows_the_reference_table(
    fresh_services: FreshServices, start: NodeStatus, steps: list[tuple[str, str]]
) -> None:
    with fresh_services() as services:
        services.nodes.create_node({"id": "n1", "name": "n1", "type": "physical", "status": start})
        status, changes = start, [(None, start)]
        for target, reason in steps:
            try:
                services.nodes.update_node_status("n1", target, reason=reason)
            except Conflict:
                assert target != status and target in STATUS_NAMES and target not in NODE_TABLE[status]
            except InvalidInput:
                assert target not in STATUS_NAMES or (target == MAINT and not reason.strip())
            else:
                if target != status:
                    assert target in NODE_TABLE[status]
                    changes.append((status, NodeStatus(target)))
                    status = NodeStatus(target)
            assert services.nodes.get_node("n1").status == status

        history = services.nodes.status_history("n1")
        assert len(history) == len(changes)
        assert [(c.from_status, c.to_status) for c in history] == changes


# --- instance state machine and reservations --------------------------------

S = InstanceState
INSTANCE_TABLE = {
    S.PENDING: {S.PREPARING, S.STOPPING, S.FAILED},
    S.PREPARING: {S.STARTING, S.STOPPING, S.FAILED},
    S.STARTING: {S.RUNNING, S.STOPPING, S.FAILED},
    S.RUNNING: {S.STOPPING, S.FAILED},
    S.STOPPING: {S.STOPPED, S.FAILED},
    S.STOPPED: set(),
    S.FAILED: set(),
}
HOLDS_RESOURCES = {S.PENDING, S.PREPARING, S.STARTING, S.RUNNING, S.STOPPING}
CAPACITY = {
    "n1": Resources(cpu=4, memory_mb=4096, gpu=2),
    "n2": Resources(cpu=2, memory_mb=1024, gpu=0),
}
NEEDS = st.builds(
    Resources,
    cpu=st.sampled_from([0, 0.5, 1, 1.5, 2, 3]),
    memory_mb=st.sampled_from([0, 256, 512, 1024, 2048]),
    gpu=st.sampled_from([0, 0, 1, 2]),
)
OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(sorted(CAPACITY)), NEEDS),
    st.tuples(st.just("move"), st.integers(0, 30), st.sampled_from(list(S))),
)


def _total(resources: list[Resources]) -> Resources:
    total = Resources()
    for r in resources:
        total = total + r
    return total


def _hardware(cap: Resources) -> dict[str, Any]:
    return {"cpu": {"cores": cap.cpu}, "memory_mb": cap.memory_mb, "gpu_count": cap.gpu}


@SETTINGS
@given(st.lists(OPS, max_size=30))
def test_live_instances_never_exceed_capacity(
    fresh_services: FreshServices, ops: list[tuple[Any, ...]]
) -> None:
    with fresh_services() as services:
        for node_id, cap in CAPACITY.items():
            services.nodes.create_node(
                {"id": node_id, "name": node_id, "type": "virtual", "hardware": _hardware(cap)}
            )
        model: dict[str, tuple[str, InstanceState, Resources]] = {}  # id -> node, state, resources

        def live_on(node_id: str) -> list[Resources]:
            return [r for n, s, r in model.values() if n == node_id and s in HOLDS_RESOURCES]

        for n, (op, arg, value) in enumerate(ops):
            if op == "create":
                fits = (_total(live_on(arg)) + value).fits_in(CAPACITY[arg])
                try:
                    services.instances.create_instance({"node_id": arg, "id": f"i{n}", "resources": value})
                except Conflict:
                    assert not fits
                else:
                    assert fits
                    model[f"i{n}"] = (arg, S.PENDING, value)
            elif model:
                id = sorted(model)[arg % len(model)]
                node_id, state, need = model[id]
                try:
                    services.instances.transition(id, value)
                except Conflict:
                    assert value != state and value not in INSTANCE_TABLE[state]
                else:
                    assert value == state or value in INSTANCE_TABLE[state]
                    model[id] = (node_id, value, need)

            for node_id, cap in CAPACITY.items():
                stored = [i.resources for i in services.instances.instances.on_node(node_id) if i.state.live]
                assert _total(stored).fits_in(cap)
                assert services.instances.reserved(node_id) == _total(stored) == _total(live_on(node_id))
        assert {i.id: i.state for i in services.instances.list_instances().items} == {
            id: state for id, (_, state, _) in model.items()
        }
