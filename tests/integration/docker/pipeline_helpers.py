"""Helpers for the end-to-end pipeline tests: a fleet with game cards, runs over REST, a slow registry.

    stage = Stage(fleet, docker_client)
    node = stage.node()                                  # hub + one real agent, online
    launched = stage.launch(game_image.v1, health="tcp")
    run = stage.wait_run(launched["run_id"], "succeeded")

`SlowProxy` forwards TCP to the registry at a limited rate, so a pull lasts
long enough to be cancelled (or an agent killed) while it runs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from fleet_helpers import Fleet
from testbed.docker import rootfs_tar

TERMINAL = ("succeeded", "failed", "cancelled")


class Stage:
    """One test's fleet, with a game card and a platform for launching instances."""

    def __init__(self, fleet: Fleet, docker_client: Any) -> None:
        self.fleet = fleet
        self.docker = docker_client
        self.nodes: list[str] = []
        self._cards = 0

    def node(self, node_id: str = "pipe-a", **fields: Any) -> str:
        if not self.fleet.hubs:
            self.fleet.start_hub()
        token = self.fleet.add_node(node_id, location="lab", **fields)
        self.fleet.start_agent(node_id, token)
        self.fleet.wait_online([node_id])
        self.nodes.append(node_id)
        return node_id

    def game(self, image: str, cpu: float = 0.1, memory_mb: int = 32, **params: Any) -> str:
        """A platform and a game card whose one version is `image`; the card's id."""
        self._cards += 1
        card_id = f"game-{self._cards}"
        r = self.fleet.api.post("/api/v1/platforms", json={
            "id": f"plat-{self._cards}", "name": "busybox", "pipeline": "platform-start", "params": params})
        assert r.status_code == 201, r.text
        r = self.fleet.api.post("/api/v1/gamecards", json={
            "id": card_id, "name": "Tiny", "platform": f"plat-{self._cards}",
            "versions": [{"version": "1.0.0", "image": image, "resources": {"cpu": cpu, "memory_mb": memory_mb}}]})
        assert r.status_code == 201, r.text
        return card_id

    def launch(self, image: str, **params: Any) -> dict[str, Any]:
        """Launch an instance of a new game card of `image`: {instance, run_id}."""
        card = self.game(image)
        r = self.fleet.api.post("/api/v1/instances", json={"game": card, "params": params})
        assert r.status_code == 201, r.text
        launched: dict[str, Any] = r.json()
        return launched

    def run(self, run_id: str) -> dict[str, Any]:
        r = self.fleet.api.get(f"/api/v1/runs/{run_id}")
        assert r.status_code == 200, r.text
        run: dict[str, Any] = r.json()
        return run

    def instance(self, instance_id: str) -> dict[str, Any]:
        r = self.fleet.api.get(f"/api/v1/instances/{instance_id}")
        assert r.status_code == 200, r.text
        instance: dict[str, Any] = r.json()
        return instance

    def wait_run(self, run_id: str, state: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the run is finished; it must have ended in `state`."""

        def finished() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["state"] in TERMINAL else None

        run = self.fleet.wait(f"run {run_id} to finish", finished, timeout)
        assert run["state"] == state, f"run ended {run['state']}: {run.get('error')}\n{run}"
        return run

    def wait_step(self, run_id: str, step: str, state: str = "running", progress: int = 0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            run = self.run(run_id)
            for s in run["steps"]:
                if s["name"] == step and s["state"] == state and s["progress"] >= progress:
                    return run
            assert run["state"] not in TERMINAL, f"run ended before step {step} was {state}: {run}"
            return None

        return self.fleet.wait(f"step {step} of run {run_id} {state}", reached)

    def wait_instance(self, instance_id: str, state: str) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            instance = self.instance(instance_id)
            return instance if instance["state"] == state else None

        return self.fleet.wait(f"instance {instance_id} {state}", reached)

    def containers(self, instance_id: str) -> list[Any]:
        """Every container (running or not) labelled with the instance."""
        return list(self.docker.containers.list(all=True, filters={"label": f"gamenode.instance={instance_id}"}))

    def free(self, node_id: str) -> dict[str, Any]:
        """What the node has left: its capacity minus the live instances' reservations."""
        r = self.fleet.api.get("/api/v1/instances", params={"node_id": node_id})
        assert r.status_code == 200, r.text
        live = [i for i in r.json() if i["state"] not in ("stopped", "failed")]
        return {"live": len(live), "cpu": sum(i["resources"]["cpu"] for i in live)}

    def logs(self, **query: str) -> list[dict[str, Any]]:
        r = self.fleet.api.get("/api/v1/logs", params=query)
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = r.json()["entries"]
        return entries

    def cleanup(self) -> None:
        for node_id in self.nodes:
            for container in self.docker.containers.list(all=True, filters={"label": f"gamenode.node={node_id}"}):
                with contextlib.suppress(Exception):
                    container.remove(force=True)


def http_get(port: int, path: str = "/") -> str:
    """The body of a plain HTTP/1.0 GET to 127.0.0.1:`port` ("" when nothing answers)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            chunks = []
            while data := sock.recv(65536):
                chunks.append(data)
    except OSError:
        return ""
    response = b"".join(chunks).decode(errors="replace")
    return response.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in response else ""


def push_big_image(docker_client: Any, repo: str, size_mb: int) -> str:
    """An image with a `size_mb` MB incompressible layer, pushed as `repo:big`, no local copy left."""
    import io
    import os
    import shutil
    import tarfile

    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is part of the testbed"
    base = tarfile.open(fileobj=io.BytesIO(rootfs_tar(__import__("pathlib").Path(busybox), "big")))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member in base.getmembers():
            tar.addfile(member, base.extractfile(member) if member.isfile() else None)
        blob = os.urandom(size_mb * 1024 * 1024)
        info = tarfile.TarInfo("www/blob")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    ref = f"{repo}:big"
    docker_client.api.import_image_from_data(out.getvalue(), repository=repo, tag="big",
                                             changes=['CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]'])
    for event in docker_client.api.push(repo, tag="big", stream=True, decode=True):
        assert not event.get("error"), event
    docker_client.api.remove_image(ref, force=True)
    return ref


class SlowProxy:
    """A TCP proxy on 127.0.0.1 to `target`, sending at most `rate` bytes per second each way."""

    def __init__(self, target: str, rate: int) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.rate = rate
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        chunk = max(1024, self.rate // 20)
        with contextlib.suppress(OSError):
            while data := source.recv(chunk):
                sink.sendall(data)
                time.sleep(len(data) / self.rate)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def slow_registry(target: str, rate: int) -> Iterator[SlowProxy]:
    proxy = SlowProxy(target, rate)
    try:
        yield proxy
    finally:
        proxy.close()
