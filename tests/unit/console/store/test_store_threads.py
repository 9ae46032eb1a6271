"""Many threads on one store: no errors, no lost writes, no half-written records."""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from console.errors import Conflict
from console.models import GameNode
from console.store import NodeStore

MakeNode = Callable[..., GameNode]

THREADS = 8
OPS = 200


@pytest.fixture(autouse=True)
def fast_switching() -> Iterator[None]:
    """Switch threads often: more interleavings, and spinning readers cannot starve a writer."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


def _run_threads(target: Callable[[int], None], count: int = THREADS) -> list[BaseException]:
    """Run `target(i)` in `count` threads started together; return what they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a thread hung"
    return errors


def _consistent(node: GameNode) -> bool:
    """Every field a writer sets carries the same version number."""
    v = node.hardware["v"]
    return node.name == f"v{v}" and node.labels == {"v": str(v)} and node.network["blob"] == "x" * (v % 97)


def test_mixed_operations_from_many_threads(node_store: NodeStore, make_node: MakeNode) -> None:
    shared = [make_node(f"shared-{i}") for i in range(5)]
    for node in shared:
        node_store.add(node)
    expected: list[dict[str, GameNode]] = [{} for _ in range(THREADS)]

    def work(t: int) -> None:
        rng = random.Random(t)
        mine = expected[t]
        for op in range(OPS):
            kind = rng.random()
            if kind < 0.15 or not mine:
                node = make_node(f"t{t}-{op}", hardware={"op": op})
                node_store.add(node)
                mine[node.id] = node
            elif kind < 0.25:
                id = rng.choice(sorted(mine))
                mine[id] = node_store.update(mine[id].model_copy(update={"name": f"upd {op}"}))
            elif kind < 0.30:
                id = rng.choice(sorted(mine))
                mine[id] = node_store.mutate(id, lambda n, op=op: n.model_copy(update={"location": f"l{op}"}))
            elif kind < 0.33:
                id = rng.choice(sorted(mine))
                node_store.delete(id)
                del mine[id]
            elif kind < 0.75:
                assert node_store.get(rng.choice(sorted(mine))) is not None
                assert node_store.get(rng.choice(shared).id) in shared
            else:
                ids = [n.id for n in node_store.list()]
                assert ids == sorted(ids)
                assert len(node_store.filter(lambda n: n.id.startswith(f"t{t}-"))) == len(mine)

    assert _run_threads(work) == []

    want = {node.id: node for node in shared}
    for mine in expected:
        want.update(mine)
    assert {node.id: node for node in node_store.list()} == want
    fresh = NodeStore(node_store.root)
    fresh.load()
    assert fresh.list() == node_store.list()


def test_mutate_from_many_threads_loses_no_increment(
    node_store: NodeStore, make_node: MakeNode, reopen: Callable[[NodeStore], NodeStore]
) -> None:
    node_store.add(make_node("counter", hardware={"count": 0}))
    per_thread = 25

    def bump(node: GameNode) -> GameNode:
        return node.model_copy(update={"hardware": {"count": node.hardware["count"] + 1}})

    def work(_: int) -> None:
        for _ in range(per_thread):
            node_store.mutate("counter", bump)

    assert _run_threads(work) == []
    assert node_store.get("counter").hardware["count"] == THREADS * per_thread
    assert reopen(node_store).get("counter").hardware["count"] == THREADS * per_thread


def test_adding_the_same_id_from_many_threads_lets_exactly_one_win(
    node_store: NodeStore, make_node: MakeNode, reopen: Callable[[NodeStore], NodeStore]
) -> None:
    winners: dict[str, list[GameNode]] = {f"race-{r}": [] for r in range(5)}
    lock = threading.Lock()

    def race(id: str) -> Callable[[int], None]:
        def work(t: int) -> None:
            node = make_node(id, name=f"thread {t}")
            node_store.add(node)
            with lock:
                winners[id].append(node)

        return work

    for id in winners:
        errors = _run_threads(race(id))
        assert len(winners[id]) == 1
        assert len(errors) == THREADS - 1
        assert all(isinstance(e, Conflict) and f"'{id}' already exists" in str(e) for e in errors)
        assert node_store.get(id) == winners[id][0]
    again = reopen(node_store)
    assert [again.get(id) for id in winners] == [w[0] for w in winners.values()]


def test_readers_never_see_a_half_written_record(node_store: NodeStore, make_node: MakeNode) -> None:
    def version(v: int) -> GameNode:
        blob = {"blob": "x" * (v % 97)}
        return make_node("hot", name=f"v{v}", labels={"v": str(v)}, hardware={"v": v}, network=blob)

    node_store.add(version(0))
    path = node_store.root / "hot.yaml"
    done = threading.Event()
    last = 200
    seen_memory: list[int] = []
    seen_disk: list[int] = []

    def writer() -> None:
        try:
            for v in range(1, last + 1):
                node_store.update(version(v))
        finally:
            done.set()

    def memory_reader() -> None:
        previous = -1
        while not done.is_set():
            node = node_store.get("hot")
            assert _consistent(node), node
            assert node.hardware["v"] >= previous  # never goes back in time
            previous = node.hardware["v"]
            seen_memory.append(previous)

    def disk_reader() -> None:
        while not done.is_set():
            # the file is the old one or the new one, never a mix of the two
            data = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
            node = GameNode.model_validate(data)
            assert _consistent(node), data
            seen_disk.append(node.hardware["v"])

    roles = [writer, memory_reader, disk_reader]
    assert _run_threads(lambda i: roles[i](), count=len(roles)) == []
    assert node_store.get("hot") == version(last)
    assert seen_memory and seen_disk


def test_list_while_others_add_and_delete(node_store: NodeStore, make_node: MakeNode) -> None:
    finished: list[int] = []

    def churn(t: int) -> None:
        try:
            for i in range(40):
                node_store.add(make_node(f"c{t}-{i}"))
                if i % 2:
                    node_store.delete(f"c{t}-{i - 1}")
        finally:
            finished.append(t)

    def lister(_: int) -> None:
        while len(finished) < 2:
            nodes = node_store.list()
            ids = [n.id for n in nodes]
            assert ids == sorted(ids)
            assert len(set(ids)) == len(ids)
            assert all(isinstance(n, GameNode) for n in node_store)

    def role(i: int) -> None:
        (churn if i < 2 else lister)(i)

    assert _run_threads(role, count=4) == []
    survivors = sorted(f"c{t}-{i}" for t in range(2) for i in range(1, 40, 2))
    assert sorted(n.id for n in node_store.list()) == survivors
    assert {p.stem for p in Path(node_store.root).glob("*.yaml")} == {n.id for n in node_store.list()}
