"""The actions against a real dockerd and a local registry (marker `docker`).

Every container, network and image a test makes carries this session's
prefix and is removed when the test ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from testbed.docker import GameImage, Registry, build_and_push

from agent.errors import StepFailed
from agent.pipeline.actions import ACTION_RUNNERS
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import ACTIONS
from agent.pipeline.ports import PortAllocator, port_is_bindable
from agent.runtime import INSTANCE_LABEL, DockerRuntime

pytestmark = pytest.mark.docker

SESSION = f"gntest{uuid.uuid4().hex[:8]}"


class Recorder:
    def __init__(self) -> None:
        self.progress: list[tuple[float, str]] = []
        self.logs: list[tuple[str, str, str]] = []

    def on_progress(self, percent: float, message: str) -> None:
        self.progress.append((percent, message))

    def on_log(self, text: str, level: str = "info", stream: str = "") -> None:
        self.logs.append((text, level, stream))

    def lines(self, stream: str | None = None) -> list[str]:
        return [text for text, _, s in self.logs if stream is None or s == stream]


async def act(ctx: StepContext, action: str, **inputs: Any) -> dict[str, Any]:
    return await ACTION_RUNNERS[action](ctx, ACTIONS[action].model_validate(inputs))


@pytest.fixture
def runtime(docker_daemon: Any) -> Iterator[DockerRuntime]:
    rt = DockerRuntime()
    yield rt
    rt.close()


@pytest.fixture
def make_ctx(tmp_path: Path, runtime: DockerRuntime, docker_client: Any) -> Iterator[Any]:
    """Contexts for this test: `make_ctx(run=..., instance=...)`; their containers and networks go at the end."""
    ports = PortAllocator(tmp_path / "state")
    test_id = uuid.uuid4().hex[:6]

    def make(run: str = "r1", instance: str = "i1", **extra: Any) -> StepContext:
        recorder = Recorder()
        data_dir = tmp_path / "data" / instance
        data_dir.mkdir(parents=True, exist_ok=True)
        ctx = StepContext(run_id=f"{SESSION}-{test_id}-{run}", step="s", node_id="node-test",
                          instance_id=f"{SESSION}-{test_id}-{instance}", data_dir=data_dir, runtime=runtime,
                          ports=ports, progress=recorder.on_progress, log=recorder.on_log, **extra)
        ctx.recorder = recorder  # type: ignore[attr-defined]
        return ctx

    yield make
    for container in docker_client.containers.list(all=True, filters={"label": INSTANCE_LABEL}):
        if container.labels.get(INSTANCE_LABEL, "").startswith(f"{SESSION}-{test_id}"):
            container.remove(force=True)
    for network in docker_client.networks.list():
        if network.name.startswith(f"{SESSION}-{test_id}"):
            network.remove()


def rec(ctx: StepContext) -> Recorder:
    recorder: Recorder = ctx.recorder  # type: ignore[attr-defined]
    return recorder


@pytest.fixture
def local_v1(game_image: GameImage, docker_client: Any) -> str:
    docker_client.images.pull(game_image.v1)
    return game_image.v1


@pytest.fixture
def fresh_images(registry: Registry, docker_client: Any) -> Iterator[dict[str, str]]:
    """Two tags of an image whose layer nothing else has: {ref: digest}; pulls of it really download."""
    repo = f"{registry.address}/game/{SESSION}-{uuid.uuid4().hex[:6]}"
    token = {"www/token": uuid.uuid4().hex.encode()}
    images = {f"{repo}:{tag}": build_and_push(docker_client, f"{repo}:{tag}", tag, token) for tag in ("1", "2")}
    yield images
    for ref in images:
        with contextlib.suppress(Exception):
            docker_client.api.remove_image(ref, force=True)


async def test_pull_reports_bytes_and_skips_when_the_digest_matches(
        make_ctx: Any, fresh_images: dict[str, str], docker_client: Any) -> None:
    ctx = make_ctx()
    v1, v2 = fresh_images
    first = await act(ctx, "image.pull", image=v1)
    assert first["pulled"] is True and first["bytes"] > 0
    assert first["digest"] == fresh_images[v1]
    assert any("MB" in message for _, message in rec(ctx).progress)
    assert any("Pull complete" in line for line in rec(ctx).lines("stdout"))
    again = await act(ctx, "image.pull", image=v1)
    assert again == {"image": v1, "digest": first["digest"], "pulled": False, "bytes": 0}
    forced = await act(ctx, "image.pull", image=v1, always=True)
    assert forced["pulled"] is True
    # a local :1 that is really :2 does not match the registry's :1: pulled again
    docker_client.images.pull(v2)
    docker_client.api.tag(v2, v1.rsplit(":", 1)[0], "1", force=True)
    repulled = await act(ctx, "image.pull", image=v1)
    assert repulled["pulled"] is True and repulled["digest"] == fresh_images[v1]


async def test_missing_image_fails_with_the_registrys_reason(make_ctx: Any, game_image: GameImage) -> None:
    with pytest.raises(StepFailed, match=r"pulling .*/game/tiny:nope failed: .*(manifest unknown|not found)"):
        await act(make_ctx(), "image.pull", image=f"{game_image.repo}:nope", username="u", password="s3cret-pw")


async def test_missing_registry_fails_without_showing_the_password(make_ctx: Any, docker_daemon: Any) -> None:
    port = 1  # nothing listens there
    with pytest.raises(StepFailed) as failed:
        await act(make_ctx(), "image.pull", image=f"127.0.0.1:{port}/game/none:1", username="u", password="s3cret-pw")
    assert "failed" in failed.value.message and "s3cret-pw" not in failed.value.message


async def test_network_ensure_creates_once_and_allocates_distinct_free_ports(
        make_ctx: Any, docker_client: Any) -> None:
    ctx = make_ctx()
    name = f"{ctx.instance_id}-net"
    specs = [{"name": "game", "container_port": 8080}, {"name": "query", "container_port": 27015, "protocol": "udp"},
             {"name": "rcon", "container_port": 27015}]
    first = await act(ctx, "network.ensure", network=name, ports=specs)
    network = docker_client.networks.get(name)
    assert network.attrs["Labels"]["gamenode.instance"] == ctx.instance_id
    ports = [p["host_port"] for p in first["ports"]]
    assert len({(p["host_port"], p["protocol"]) for p in first["ports"]}) == 3  # udp and tcp may share a number
    assert ports[0] != ports[2] and all(20000 <= p <= 29999 for p in ports)
    assert first["port_game"] == ports[0]
    again = await act(ctx, "network.ensure", network=name, ports=specs)
    assert again == first and docker_client.networks.get(name).id == network.id
    other = await act(make_ctx(run="r2", instance="i2"), "network.ensure", ports=specs[:1])
    assert other["ports"][0]["host_port"] not in ports


async def test_container_run_maps_every_input_and_waits_by_tcp_and_http(
        make_ctx: Any, local_v1: str, docker_client: Any) -> None:
    ctx = make_ctx()
    (ctx.data_dir / "conf").mkdir()
    net = await act(ctx, "network.ensure", network=f"{ctx.instance_id}-net",
                    ports=[{"name": "game", "container_port": 8080}])
    port = net["port_game"]
    out = await act(ctx, "container.run", image=local_v1, ports=net["ports"], network=net["network"],
                    env={"GAME_MODE": "ffa", "PLAYERS": 8, "DEBUG": True}, labels={"team": "blue"},
                    cpus=0.5, memory_mb=64, data_mount="/data", volumes={"conf": "/conf:ro"}, restart="on-failure")
    assert out["name"] == f"gn-{ctx.instance_id}" and out["ports"][0]["host_port"] == port
    attrs = docker_client.api.inspect_container(out["container_id"])
    host = attrs["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 64 * 1024 * 1024
    assert host["RestartPolicy"]["Name"] == "on-failure"
    assert f"{ctx.data_dir}:/data:rw" in host["Binds"] and f"{ctx.data_dir / 'conf'}:/conf:ro" in host["Binds"]
    assert host["PortBindings"]["8080/tcp"] == [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
    assert {"GAME_MODE=ffa", "PLAYERS=8", "DEBUG=true"} <= set(attrs["Config"]["Env"])
    labels = attrs["Config"]["Labels"]
    assert labels["team"] == "blue" and labels["gamenode.run"] == ctx.run_id and labels["gamenode.node"] == "node-test"
    assert (await act(ctx, "container.wait", tcp_port=port))["healthy_after_s"] >= 0
    await act(ctx, "container.wait", http_url=f"http://127.0.0.1:{port}/version")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as answer:
        assert answer.read() == b"1\n"
    assert await act(ctx, "container.stop", grace=1) == {"container_id": out["container_id"]}
    assert docker_client.api.inspect_container(out["container_id"])["State"]["Status"] == "exited"
    await act(ctx, "container.restart", grace=1)
    assert docker_client.api.inspect_container(out["container_id"])["State"]["Status"] == "running"
    await act(ctx, "container.wait", tcp_port=port)
    assert await act(ctx, "container.remove") == {"container_id": out["container_id"]}
    assert not docker_client.containers.list(all=True, filters={"id": out["container_id"]})
    assert await act(ctx, "container.remove") == {}
    assert port_is_bindable(port)


async def test_wait_by_log_line_forwards_the_output(make_ctx: Any, local_v1: str) -> None:
    ctx = make_ctx()
    script = "echo starting; echo warming up >&2; sleep 0.3; echo READY on 8080; sleep 30"
    await act(ctx, "container.run", image=local_v1, command=["sh", "-c", script])
    await act(ctx, "container.wait", log_line=r"READY on \d+")
    assert "starting" in rec(ctx).lines("stdout") and "warming up" in rec(ctx).lines("stderr")


async def test_wait_times_out_when_nothing_listens_behind_the_published_port(make_ctx: Any, local_v1: str) -> None:
    ctx = make_ctx()
    net = await act(ctx, "network.ensure", ports=[{"container_port": 9999}])
    port = net["ports"][0]["host_port"]
    await act(ctx, "container.run", image=local_v1, command=["sh", "-c", "echo idle; sleep 60"], ports=net["ports"])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(act(ctx, "container.wait", tcp_port=port, log_line="never"), 1.5)
    assert "idle" in rec(ctx).lines("stdout")


async def test_wait_fails_at_once_when_the_container_exits(make_ctx: Any, local_v1: str) -> None:
    ctx = make_ctx()
    await act(ctx, "container.run", image=local_v1, command=["sh", "-c", "echo config missing >&2; exit 3"])
    with pytest.raises(StepFailed, match=r"stopped before it became healthy: .*exit code 3.*config missing"):
        await asyncio.wait_for(act(ctx, "container.wait", tcp_port=1), 30)


async def test_container_run_is_idempotent_per_run_and_refuses_another_runs(
        make_ctx: Any, local_v1: str, docker_client: Any) -> None:
    ctx = make_ctx()
    first = await act(ctx, "container.run", image=local_v1)
    docker_client.api.stop(first["container_id"], timeout=0)
    again = await act(ctx, "container.run", image=local_v1)
    assert again["container_id"] == first["container_id"]
    assert docker_client.api.inspect_container(first["container_id"])["State"]["Status"] == "running"
    named = docker_client.containers.list(all=True, filters={"name": f"^gn-{ctx.instance_id}$"})
    assert len(named) == 1
    other = make_ctx(run="r2")
    with pytest.raises(StepFailed, match=r"already exists .*made by run .*replace: true"):
        await act(other, "container.run", image=local_v1)
    replaced = await act(other, "container.run", image=local_v1, replace=True)
    assert replaced["container_id"] != first["container_id"]
    labels = docker_client.api.inspect_container(replaced["container_id"])["Config"]["Labels"]
    assert labels["gamenode.run"] == other.run_id


async def test_runtime_lists_watches_and_streams_managed_containers(
        make_ctx: Any, local_v1: str, runtime: DockerRuntime) -> None:
    import threading

    ctx = make_ctx()
    events: list[tuple[str, str]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=runtime.watch_events, args=(lambda a, i: events.append((a, i.name)), stop))
    watcher.start()
    try:
        await asyncio.sleep(0.3)
        out = await act(ctx, "container.run", image=local_v1, command=["sh", "-c", "echo one; echo two >&2"])
        name = out["name"]
        lines = await asyncio.to_thread(lambda: list(runtime.stream_logs(name, None, threading.Event())))
        assert sorted(lines) == [("stderr", "two"), ("stdout", "one")]
        assert name in [info.name for info in runtime.list_managed()]
        info = runtime.inspect(name)
        assert info is not None and info.instance_id == ctx.instance_id and info.run_id == ctx.run_id
        assert runtime.remove(name) is True and runtime.remove(name) is False
        for _ in range(50):
            if ("destroy", name) in events:
                break
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        watcher.join(5)
    assert [a for a, n in events if n == name][:2] == ["create", "start"] and ("destroy", name) in events
    assert not watcher.is_alive()
