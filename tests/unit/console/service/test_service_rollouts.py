"""RolloutService: choosing and checking nodes, running a rollout (with a fake runner), verify, revoke,
cancel, one rollout per node, host keys against a real in-process sshd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from rollout_fakes import FakeRunner, fake_bundle

from console.errors import Conflict, InvalidInput, NotFound, Unavailable
from console.models import GameNode, RolloutRecord, RolloutState
from console.service import RolloutHub, RolloutRequest, Services
from console.service.rollouts import STEPS

WAIT = 10.0
SSH = {"host": "10.0.0.1", "port": 2222}


class Online:
    """The hub's `is_online`: the node ids the test says are connected."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    def __call__(self, node_id: str) -> bool:
        return node_id in self.ids


@pytest.fixture
async def online(services: Services) -> AsyncIterator[Online]:
    online = Online()
    services.rollouts.bundle_source = fake_bundle
    services.rollouts.attach(RolloutHub(asyncio.get_running_loop(), "hub.example:7070", online))
    yield online
    await services.rollouts.close(timeout=WAIT)


def ssh_node(make_node: Callable[..., GameNode], id: str, **fields: Any) -> GameNode:
    return make_node(id, ssh=SSH, **fields)


async def finished(services: Services, rollout_id: str) -> RolloutRecord:
    """Wait (bounded) until the rollout has finished; the record as stored."""
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def listener(record: RolloutRecord) -> None:
        if record.state.finished:
            loop.call_soon_threadsafe(done.set)

    unsubscribe = services.rollouts.subscribe(listener, rollout_id, current=True)
    try:
        await asyncio.wait_for(done.wait(), WAIT)
    finally:
        unsubscribe()
    return services.rollouts.rollouts.get(rollout_id)


# --- choosing nodes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields", [{}, {"nodes": ["a"], "selector": "x=y"}, {"selector": "x=y", "all_without_agent": True}]
)
async def test_exactly_one_way_of_choosing_nodes(services: Services, online: Online, fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match="exactly one of"):
        services.rollouts.start(RolloutRequest(**fields))


async def test_unknown_nodes_and_nodes_without_ssh_are_named(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    make_node("plain")
    with pytest.raises(InvalidInput) as unknown:
        services.rollouts.start(RolloutRequest(nodes=["a", "ghost", "gone"]))
    assert [d.path for d in unknown.value.details] == ["ghost", "gone"]
    with pytest.raises(InvalidInput) as no_ssh:
        services.rollouts.start(RolloutRequest(nodes=["a", "plain"]))
    assert [d.path for d in no_ssh.value.details] == ["plain"]
    assert "no ssh access" in no_ssh.value.message


async def test_a_selector_that_matches_nothing_is_refused(services: Services, online: Online) -> None:
    with pytest.raises(InvalidInput, match="no node selected"):
        services.rollouts.start(RolloutRequest(selector="region=mars"))


async def test_all_without_agent_takes_nodes_with_ssh_and_no_agent_online(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    for id in ("a", "b", "c"):
        ssh_node(make_node, id)
    make_node("no-ssh")
    online.ids.add("b")
    runner = services.rollouts.runner = FakeRunner()
    record = services.rollouts.start(RolloutRequest(all_without_agent=True))
    assert [h.node_id for h in record.hosts] == ["a", "c"]
    await finished(services, record.id)
    assert [n.id for n in runner.plans[0].nodes] == ["a", "c"]


async def test_the_plan_carries_the_hubs_ca_for_the_agents_to_pin(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    runner = services.rollouts.runner = FakeRunner()
    await finished(services, services.rollouts.start(RolloutRequest(nodes=["a"])).id)
    assert runner.plans[0].ca_pem is None  # a hub without a CA (--insecure): the agents get --insecure
    assert services.rollouts.hub is not None
    services.rollouts.hub.ca_pem = b"-----BEGIN CERTIFICATE-----\n"
    await finished(services, services.rollouts.start(RolloutRequest(nodes=["a"])).id)
    assert runner.plans[1].ca_pem == b"-----BEGIN CERTIFICATE-----\n"
    assert runner.plans[1].hub_address == "hub.example:7070"


async def test_starting_needs_a_hub(services: Services, make_node: Callable[..., GameNode]) -> None:
    ssh_node(make_node, "a")
    with pytest.raises(Unavailable, match="running hub"):
        services.rollouts.start(RolloutRequest(nodes=["a"]))


# --- running ------------------------------------------------------------------------------


async def test_a_rollout_runs_reports_progress_and_is_stored(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a", labels={"region": "eu"})
    ssh_node(make_node, "b", labels={"region": "eu"})
    runner = services.rollouts.runner = FakeRunner(hold=True)
    record = services.rollouts.start(RolloutRequest(selector="region=eu", parallel=3, canary=1), actor="ops")
    assert record.id.startswith("ro-") and record.state == RolloutState.PENDING
    assert record.created_by == "ops" and (record.parallel, record.canary) == (3, 1)
    assert [s.name for s in record.hosts[0].steps] == list(STEPS[record.action])
    assert record.hosts[0].host == "10.0.0.1:2222"
    assert services.rollouts.rollouts.get(record.id) == record

    await asyncio.wait_for(runner.started.wait(), WAIT)
    running = services.rollouts.get(record.id)
    assert running.state == RolloutState.RUNNING and running.version == "9.9.9"
    assert running.hosts[0].steps[0].state == "running" and running.hosts[0].steps[0].started_at is not None
    plan = runner.plans[0]
    assert plan.hub_address == "hub.example:7070" and plan.bundle.version == "9.9.9"
    assert (plan.parallel, plan.canary, plan.known_hosts.name) == (3, 1, "known_hosts")

    runner.release.set()
    done = await finished(services, record.id)
    assert done.state == RolloutState.SUCCEEDED and done.finished_at is not None
    assert [(h.result, h.to_version, h.duration_s) for h in done.hosts] == [("installed", "9.9.9", 1.5)] * 2
    assert services.rollouts.list_rollouts().items == [done]


async def test_a_failed_host_fails_the_rollout(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    ssh_node(make_node, "b")
    services.rollouts.runner = FakeRunner({"b": "rolled_back"})
    done = await finished(services, services.rollouts.start(RolloutRequest(nodes=["a", "b"])).id)
    assert done.state == RolloutState.FAILED
    assert [h.result for h in done.hosts] == ["installed", "rolled_back"]


async def test_a_bundle_that_cannot_be_built_is_the_rollouts_error(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")

    def broken(cache: Path, archive: str | None, wheelhouse: str | None) -> Any:
        raise OSError(f"no wheels in {wheelhouse}")

    services.rollouts.bundle_source = broken
    runner = services.rollouts.runner = FakeRunner()
    done = await finished(services, services.rollouts.start(RolloutRequest(nodes=["a"], wheelhouse="/w")).id)
    assert done.state == RolloutState.FAILED and done.error == "no wheels in /w"
    assert done.hosts[0].result == "failed" and runner.plans == []


async def test_one_rollout_per_node_at_a_time(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    ssh_node(make_node, "b")
    runner = services.rollouts.runner = FakeRunner(hold=True)
    first = services.rollouts.start(RolloutRequest(nodes=["a"]))
    with pytest.raises(Conflict) as busy:
        services.rollouts.start(RolloutRequest(nodes=["b", "a"]))
    assert [d.path for d in busy.value.details] == ["a"]
    runner.release.set()
    await finished(services, first.id)
    second = services.rollouts.start(RolloutRequest(nodes=["a"], action="uninstall"))
    assert [s.name for s in second.hosts[0].steps] == ["connect", "stop", "remove", "revoke"]
    await finished(services, second.id)


async def test_cancel_stops_the_runner_and_marks_hosts_cancelled(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    runner = services.rollouts.runner = FakeRunner(hold=True)
    record = services.rollouts.start(RolloutRequest(nodes=["a"]))
    await asyncio.wait_for(runner.started.wait(), WAIT)
    services.rollouts.cancel(record.id)
    done = await finished(services, record.id)
    assert done.state == RolloutState.CANCELLED and done.hosts[0].result == "cancelled"
    with pytest.raises(Conflict, match="has finished"):
        services.rollouts.cancel(record.id)
    with pytest.raises(NotFound):
        services.rollouts.cancel("ro-nope")


async def test_a_hub_that_stopped_during_a_rollout_marks_it_failed(
    services: Services, make_node: Callable[..., GameNode]
) -> None:
    stale = RolloutRecord(id="ro-old", action="install", state=RolloutState.RUNNING)
    services.rollouts.rollouts.put(stale)
    assert services.rollouts.attach(RolloutHub(asyncio.get_running_loop(), "h:1", Online())) == 1
    record = services.rollouts.get("ro-old")
    assert record.state == RolloutState.FAILED and "hub stopped" in record.error
    await services.rollouts.close()


# --- the hub's callbacks --------------------------------------------------------------------


async def test_verify_waits_for_the_node_online_on_the_version(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a", hardware={"agent": {"version": "1.0.0"}})
    rollouts = services.rollouts
    assert await rollouts._verify("a", "1.0.0", 0.01) is False  # not connected
    online.ids.add("a")
    assert await rollouts._verify("a", "1.0.0", 0.01) is True
    waiting = asyncio.create_task(rollouts._verify("a", "2.0.0", WAIT))
    await asyncio.sleep(0)
    await asyncio.to_thread(services.nodes.merge_inventory, "a", {"agent": {"version": "2.0.0"}})
    assert await asyncio.wait_for(waiting, WAIT) is True


async def test_token_issues_a_credential_and_revoke_forgets_the_agent(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a", hardware={"agent": {"version": "1.0.0"}, "cpu": {"cores": 2}})
    token = await services.rollouts._token("a")
    assert services.credentials.verify("a", token) is not None
    await services.rollouts._revoke("a")
    assert not services.credentials.has_credential("a")
    assert services.nodes.get_node("a").hardware == {"cpu": {"cores": 2}}


# --- host keys -------------------------------------------------------------------------------


@pytest.fixture
async def sshd() -> AsyncIterator[tuple[int, asyncssh.SSHKey]]:
    """A real asyncssh server on a free loopback port (no login needed to read its key)."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[key])
    port = server.sockets[0].getsockname()[1]
    yield port, key
    server.close()
    await server.wait_closed()


async def test_fingerprint_and_trust_a_host_key(
    services: Services, online: Online, make_node: Callable[..., GameNode], sshd: tuple[int, asyncssh.SSHKey]
) -> None:
    from bootstrap import KnownHosts, fingerprint

    port, key = sshd
    make_node("a", ssh={"host": "127.0.0.1", "port": port})
    shown = await services.rollouts.fingerprint("a")
    assert (shown.fingerprint, shown.verdict) == (fingerprint(key), "unknown")
    with pytest.raises(Conflict, match="not SHA256:other"):
        await services.rollouts.trust("a", expected="SHA256:other")
    trusted = await services.rollouts.trust("a", expected=shown.fingerprint)
    assert trusted.fingerprint == shown.fingerprint
    assert KnownHosts(services.rollouts.known_hosts).check("127.0.0.1", port, key) == "known"
    assert (await services.rollouts.fingerprint("a")).verdict == "known"


async def test_a_changed_host_key_needs_replace(
    services: Services, online: Online, make_node: Callable[..., GameNode], sshd: tuple[int, asyncssh.SSHKey]
) -> None:
    from bootstrap import KnownHosts

    port, _ = sshd
    make_node("a", ssh={"host": "127.0.0.1", "port": port})
    KnownHosts(services.rollouts.known_hosts).trust("127.0.0.1", port, asyncssh.generate_private_key("ssh-ed25519"))
    assert (await services.rollouts.fingerprint("a")).verdict == "changed"
    with pytest.raises(Conflict, match="CHANGED"):
        await services.rollouts.trust("a")
    assert (await services.rollouts.trust("a", replace=True)).verdict == "known"


async def test_an_unreachable_sshd_is_unavailable(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    make_node("a", ssh={"host": "127.0.0.1", "port": 1})
    with pytest.raises(Unavailable):
        await services.rollouts.fingerprint("a")
    make_node("plain")
    with pytest.raises(InvalidInput, match="no ssh access"):
        await services.rollouts.fingerprint("plain")


async def test_the_real_runner_reports_an_unreachable_host_as_failed(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    make_node("a", ssh={"host": "127.0.0.1", "port": 1})
    record = services.rollouts.start(RolloutRequest(nodes=["a"], action="uninstall"))
    done = await finished(services, record.id)
    assert done.state == RolloutState.FAILED
    host = done.hosts[0]
    assert host.result == "failed" and host.error
    assert host.steps[0].name == "connect" and host.steps[0].state == "failed"
    assert host.steps[0].started_at is not None and host.steps[0].finished_at is not None


async def test_cancel_right_after_start_still_finishes_the_rollout(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    runner = services.rollouts.runner = FakeRunner()
    record = services.rollouts.start(RolloutRequest(nodes=["a"]))
    services.rollouts.cancel(record.id)  # before its task has run
    done = await finished(services, record.id)
    assert done.state == RolloutState.CANCELLED and runner.plans == []
    services.rollouts.start(RolloutRequest(nodes=["a"]))  # the node is free again


async def test_a_stopping_hub_cancels_rollouts_in_progress(
    services: Services, online: Online, make_node: Callable[..., GameNode]
) -> None:
    ssh_node(make_node, "a")
    ssh_node(make_node, "b")
    runner = services.rollouts.runner = FakeRunner(hold=True)
    running = services.rollouts.start(RolloutRequest(nodes=["a"]))
    await asyncio.wait_for(runner.started.wait(), WAIT)
    just_started = services.rollouts.start(RolloutRequest(nodes=["b"]))
    await services.rollouts.close(timeout=WAIT)
    for id in (running.id, just_started.id):
        assert services.rollouts.rollouts.get(id).state == RolloutState.CANCELLED
