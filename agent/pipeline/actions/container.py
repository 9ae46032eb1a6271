"""The container actions: run, wait (healthy), stop, restart, remove.

`container.run` is idempotent per run: the container of that name made by
this same run is reused (started when it is not running); another run's
container of that name is an error unless `replace: true`. Every container
carries the gamenode labels (instance, run, node, managed).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.errors import StepFailed
from agent.pipeline.actions._util import short_id
from agent.pipeline.context import StepContext
from agent.pipeline.inputs import ContainerRemove, ContainerRestart, ContainerRun, ContainerStop, PortSpec
from agent.runtime.docker import ContainerInfo

__all__ = ["remove", "restart", "run", "run_options", "stop"]

_LIVE = frozenset({"running", "restarting"})


async def run(ctx: StepContext, inputs: ContainerRun) -> dict[str, Any]:
    """Create and start the container (or reuse this run's): {container_id, name, ports}."""
    name = inputs.name or ctx.container_name
    existing = await asyncio.to_thread(ctx.runtime.inspect, name)
    if existing is not None:
        reused = await _reuse_or_clear(ctx, inputs, existing)
        if reused is not None:
            return _outputs(reused, inputs.ports)
    options = run_options(ctx, inputs)
    ctx.progress(50.0, f"starting {name}")
    info = await asyncio.to_thread(ctx.runtime.run, name, inputs.image, options)
    ctx.log(f"started container {name} ({short_id(info.id)}) from {inputs.image}")
    ctx.progress(100.0, f"{name} started")
    return _outputs(info, inputs.ports)


async def _reuse_or_clear(ctx: StepContext, inputs: ContainerRun, existing: ContainerInfo) -> ContainerInfo | None:
    """This run's container (started if needed), or None once another run's one is removed (`replace`)."""
    if existing.run_id == ctx.run_id:
        if existing.state not in _LIVE:
            await asyncio.to_thread(ctx.runtime.start, existing.id)
            ctx.log(f"started the existing container {existing.name} of this run again")
        else:
            ctx.log(f"container {existing.name} of this run is already {existing.state}")
        again = await asyncio.to_thread(ctx.runtime.inspect, existing.id)
        return again or existing
    owner = f"run {existing.run_id}" if existing.run_id else "no gamenode run"
    if not inputs.replace:
        raise StepFailed(f"a container named {existing.name} already exists ({existing.state}, made by {owner}); "
                         "set `replace: true` to replace it")
    ctx.log(f"replacing container {existing.name} ({short_id(existing.id)}, made by {owner})")
    await asyncio.to_thread(ctx.runtime.remove, existing.id, True)
    return None


def _outputs(info: ContainerInfo, ports: list[PortSpec]) -> dict[str, Any]:
    return {"container_id": info.id, "name": info.name, "ports": [p.model_dump(mode="json") for p in ports]}


def run_options(ctx: StepContext, inputs: ContainerRun) -> dict[str, Any]:
    """`inputs` as keyword arguments of the docker SDK's `containers.create`."""
    options: dict[str, Any] = {
        "command": inputs.command,
        "entrypoint": inputs.entrypoint,
        "environment": {key: _env_value(value) for key, value in inputs.env.items()},
        "labels": {**inputs.labels, **ctx.labels()},
        "ports": _port_bindings(inputs.ports),
        "volumes": _binds(ctx, inputs),
    }
    if inputs.network:
        options["network"] = inputs.network
    if inputs.cpus:
        options["nano_cpus"] = int(inputs.cpus * 1e9)
    if inputs.memory_mb:
        options["mem_limit"] = f"{inputs.memory_mb}m"
    if inputs.gpus:
        options["device_requests"] = [_gpu_request(inputs.gpus)]
    if inputs.restart != "no":
        options["restart_policy"] = {"Name": inputs.restart, "MaximumRetryCount": 0}
    return {key: value for key, value in options.items() if value is not None}


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value) if isinstance(value, int | float) else json.dumps(value)


def _port_bindings(ports: list[PortSpec]) -> dict[str, list[tuple[str, int | None]]]:
    """{"8080/tcp": [(host ip, host port or None for any)]}."""
    bindings: dict[str, list[tuple[str, int | None]]] = {}
    for port in ports:
        bindings.setdefault(f"{port.container_port}/{port.protocol}", []).append(
            (port.host_ip, port.host_port or None))
    return bindings


def _binds(ctx: StepContext, inputs: ContainerRun) -> dict[str, dict[str, str]]:
    """{host path: {bind: container path, mode: rw|ro}}; relative host paths are in the data dir."""
    binds: dict[str, dict[str, str]] = {}
    for host, target in inputs.volumes.items():
        container_path, _, mode = target.partition(":")
        if mode not in ("", "ro", "rw"):
            raise StepFailed(f"volume {host}: the mode must be ro or rw, not {mode!r}")
        binds[str(ctx.path(host, "volume"))] = {"bind": container_path, "mode": mode or "rw"}
    if inputs.data_mount:
        binds[str(ctx.data_dir)] = {"bind": inputs.data_mount, "mode": "rw"}
    return binds


def _gpu_request(count: int) -> Any:
    from docker.types import DeviceRequest  # type: ignore[import-untyped, unused-ignore]

    return DeviceRequest(count=count, capabilities=[["gpu"]])


async def stop(ctx: StepContext, inputs: ContainerStop) -> dict[str, Any]:
    """Stop the container (SIGTERM, SIGKILL after `grace`): {container_id}, or {} when missing and `missing_ok`."""
    info = await _find(ctx, inputs.container, inputs.missing_ok)
    if info is None:
        return {}
    ctx.progress(10.0, f"stopping {info.name}")
    await asyncio.to_thread(ctx.runtime.stop, info.id, inputs.grace)
    ctx.log(f"stopped container {info.name} ({short_id(info.id)})")
    return {"container_id": info.id}


async def restart(ctx: StepContext, inputs: ContainerRestart) -> dict[str, Any]:
    info = await _find(ctx, inputs.container, missing_ok=False)
    assert info is not None
    ctx.progress(10.0, f"restarting {info.name}")
    if not await asyncio.to_thread(ctx.runtime.restart, info.id, inputs.grace):
        raise StepFailed(f"container {info.name} vanished before it could be restarted")
    ctx.log(f"restarted container {info.name} ({short_id(info.id)})")
    return {"container_id": info.id}


async def remove(ctx: StepContext, inputs: ContainerRemove) -> dict[str, Any]:
    """Remove the container: {container_id}, or {} when missing and `missing_ok`.

    Host ports stay reserved: the engine releases them when the instance's stop run succeeds.
    """
    info = await _find(ctx, inputs.container, inputs.missing_ok)
    if info is None:
        return {}
    ctx.progress(10.0, f"removing {info.name}")
    await asyncio.to_thread(ctx.runtime.remove, info.id, inputs.force, inputs.volumes)
    ctx.log(f"removed container {info.name} ({short_id(info.id)})")
    return {"container_id": info.id}


async def _find(ctx: StepContext, container: str, missing_ok: bool) -> ContainerInfo | None:
    name = container or ctx.container_name
    info = await asyncio.to_thread(ctx.runtime.inspect, name)
    if info is None and not missing_ok:
        raise StepFailed(f"there is no container {name}")
    if info is None:
        ctx.log(f"there is no container {name}: nothing to do")
    return info
