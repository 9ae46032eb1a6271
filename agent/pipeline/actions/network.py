"""`network.ensure`: the instance's Docker network (created when missing) and its host ports."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.pipeline.context import StepContext
from agent.pipeline.inputs import NetworkEnsure

__all__ = ["ensure"]


async def ensure(ctx: StepContext, inputs: NetworkEnsure) -> dict[str, Any]:
    """{network, ports: [PortSpec dicts with host_port set], port_<name>: host_port for each named port}."""
    if inputs.network:
        _, created = await asyncio.to_thread(ctx.runtime.ensure_network, inputs.network, inputs.driver, ctx.labels())
        ctx.log(f"network {inputs.network} {'created' if created else 'already exists'}")
    outputs: dict[str, Any] = {"network": inputs.network, "ports": []}
    if inputs.ports:
        in_use = await asyncio.to_thread(ctx.runtime.published_ports)
        ports = await asyncio.to_thread(ctx.ports.allocate, ctx.owner, inputs.ports, in_use)
        outputs["ports"] = [port.model_dump(mode="json") for port in ports]
        outputs.update({f"port_{port.name}": port.host_port for port in ports if port.name})
        ctx.log("host ports: " + ", ".join(
            f"{p.host_ip}:{p.host_port}->{p.container_port}/{p.protocol}" for p in ports))
    ctx.progress(100.0, "network ready")
    return outputs
