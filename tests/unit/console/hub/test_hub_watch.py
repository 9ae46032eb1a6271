"""WatchNodes: the feed's coalescing, and the RPC's snapshot then deltas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from console.hub import hub_service
from console.hub.watch import NodeFeed
from proto import gamenode_pb2 as pb

if TYPE_CHECKING:
    from conftest import Hub

    from proto import gamenode_pb2_grpc as pb_grpc

WAIT = 10.0


# --- the feed --------------------------------------------------------------------------


async def test_changes_are_coalesced_per_watcher() -> None:
    feed = NodeFeed(asyncio.get_running_loop(), min_interval=0.01)
    with feed.watch() as first, feed.watch() as second:
        for _ in range(100):
            feed.changed("a")
        feed.changed("b")
        assert await first.next_batch() == {"a", "b"}
        feed.changed("c")
        assert await first.next_batch() == {"c"}
        assert await second.next_batch() == {"a", "b", "c"}
    assert feed.watchers == 0


async def test_changes_from_other_threads_arrive() -> None:
    feed = NodeFeed(asyncio.get_running_loop(), min_interval=0.01)
    with feed.watch() as watcher:
        await asyncio.to_thread(feed.changed_threadsafe, "x", None)
        assert await asyncio.wait_for(watcher.next_batch(), WAIT) == {"x"}


async def test_batches_are_spaced_by_the_minimum_interval() -> None:
    now = [100.0]
    feed = NodeFeed(asyncio.get_running_loop(), min_interval=0.05, clock=lambda: now[0])
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        feed.changed("late")  # arrives while the watcher waits: same batch
        await real_sleep(0)

    with feed.watch() as watcher:
        feed.changed("a")
        assert await watcher.next_batch() == {"a"}
        feed.changed("b")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(asyncio, "sleep", sleep)
            assert await watcher.next_batch() == {"b", "late"}
        assert slept == [pytest.approx(0.05)]


async def test_closing_the_feed_ends_every_watch() -> None:
    feed = NodeFeed(asyncio.get_running_loop())
    with feed.watch() as watcher:
        waiting = asyncio.create_task(watcher.next_batch())
        await asyncio.sleep(0)
        feed.close()
        assert await asyncio.wait_for(waiting, WAIT) is None


# --- the RPC ---------------------------------------------------------------------------


class Updates:
    def __init__(self, call: Any) -> None:
        self.call = call

    async def next(self) -> pb.NodeUpdate:
        update: pb.NodeUpdate = await asyncio.wait_for(self.call.read(), WAIT)
        return update


@pytest.fixture
async def watch(hub: Hub, hub_stub: pb_grpc.HubServiceStub) -> AsyncIterator[Any]:
    hub.runtime.feed.min_interval = 0.01
    calls = []

    def start(selector: str = "") -> Updates:
        call = hub_stub.WatchNodes(pb.WatchNodesRequest(selector=selector))
        calls.append(call)
        return Updates(call)

    yield start
    for call in calls:
        call.cancel()


def create(hub: Hub, node_id: str, **fields: Any) -> None:
    hub.services.nodes.create_node({"id": node_id, "name": node_id, "type": "physical", **fields})


async def test_snapshot_then_changes_then_deletions(hub: Hub, watch: Any) -> None:
    create(hub, "a")
    create(hub, "b")
    updates = watch()
    snapshot = await updates.next()
    assert snapshot.snapshot and [n.id for n in snapshot.nodes] == ["a", "b"] and not snapshot.deleted
    assert snapshot.snapshot_done

    create(hub, "c")
    hub.services.nodes.update_node("a", {"location": "Frankfurt"})
    hub.services.nodes.update_node("a", {"location": "Berlin"})
    seen: dict[str, pb.Node] = {}
    while set(seen) != {"a", "c"}:
        delta = await updates.next()
        assert not delta.snapshot
        seen.update({n.id: n for n in delta.nodes})
    while seen["a"].location != "Berlin":
        seen.update({n.id: n for n in (await updates.next()).nodes})

    hub.services.nodes.delete_node("b")
    delta = await updates.next()
    assert list(delta.deleted) == ["b"] and not delta.nodes


async def test_a_big_snapshot_comes_in_chunks_and_says_where_it_ends(
    hub: Hub, watch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_service, "SNAPSHOT_CHUNK", 2)
    for node_id in ("a", "b", "c", "d", "e"):
        create(hub, node_id)
    updates = watch()
    chunks = [await updates.next() for _ in range(3)]
    assert [[n.id for n in c.nodes] for c in chunks] == [["a", "b"], ["c", "d"], ["e"]]
    assert all(c.snapshot for c in chunks)
    assert [c.snapshot_done for c in chunks] == [False, False, True]


async def test_an_empty_fleet_still_gets_a_finished_snapshot(hub: Hub, watch: Any) -> None:
    snapshot = await watch().next()
    assert snapshot.snapshot and snapshot.snapshot_done and not snapshot.nodes


async def test_a_selector_filters_and_nodes_leaving_it_are_deleted(hub: Hub, watch: Any) -> None:
    create(hub, "eu1", labels={"region": "eu"})
    create(hub, "us1", labels={"region": "us"})
    updates = watch("region=eu")
    assert [n.id for n in (await updates.next()).nodes] == ["eu1"]

    hub.services.nodes.update_labels("us1", set={"tier": "gold"})  # not ours: nothing to send
    hub.services.nodes.update_labels("eu1", set={"region": "ap"})
    delta = await updates.next()
    assert list(delta.deleted) == ["eu1"] and not delta.nodes
    hub.services.nodes.update_labels("us1", set={"region": "eu"})
    delta = await updates.next()
    assert [n.id for n in delta.nodes] == ["us1"]


async def test_live_metrics_reach_watchers(hub: Hub, watch: Any) -> None:
    agent = hub.make_agent("n1")
    updates = watch()
    assert [n.id for n in (await updates.next()).nodes] == ["n1"]
    await agent.connect()
    await agent.send(metrics=pb.MetricsBatch(samples=[pb.MetricsSample(cpu_percent=77.0)]))
    await agent.sync()
    while True:
        delta = await updates.next()
        nodes = [n for n in delta.nodes if n.id == "n1" and n.metrics.fields]
        if nodes:
            break
    assert nodes[0].metrics["cpu_percent"] == 77.0
    assert nodes[0].resources["cpu_percent"] == 77.0


async def test_a_bad_selector_is_invalid_argument(hub: Hub, watch: Any) -> None:
    import grpc

    updates = watch("region in eu")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await updates.next()
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_latest_skips_to_the_newest_state_and_ends_after_a_finished_one() -> None:
    import threading

    from console.hub.watch import Latest

    latest: Latest[int] = Latest()
    latest.put(1)
    thread = threading.Thread(target=lambda: [latest.put(n) for n in (2, 3)])
    thread.start()
    thread.join()
    await asyncio.sleep(0)  # let the loop take the thread's puts
    seen = [n async for n in latest.until(lambda n: n >= 3)]
    assert seen == [3]
