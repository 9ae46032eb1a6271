"""Host ports for game containers, reserved per owner (an instance, or a run) without collisions.

A port is free when no other owner has reserved it (the reservations live in
`STATE_DIR/ports.json`, written atomically, so they survive agent restarts),
no container publishes it (the caller passes what Docker reports), and a
socket can be bound to it right now. Asking again for the same owner answers
the same ports: a resumed run gets what it had.

    ports = PortAllocator(state_dir)
    specs = ports.allocate("inst-1", [PortSpec(name="game", container_port=8080)], in_use=docker_ports)
    ports.release("inst-1")
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent._files import write_atomic
from agent.errors import StepFailed
from agent.pipeline.inputs import PortSpec

__all__ = ["DEFAULT_RANGE", "PortAllocator", "port_is_bindable"]

log = logging.getLogger(__name__)

DEFAULT_RANGE = (20000, 29999)
FILE_NAME = "ports.json"


def port_is_bindable(port: int, protocol: str = "tcp", host_ip: str = "0.0.0.0") -> bool:
    """Whether a socket can be bound to `host_ip:port` now (SO_REUSEADDR: a TIME_WAIT leftover is no obstacle)."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    try:
        with socket.socket(family, kind) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host_ip or "0.0.0.0", port))
    except OSError:
        return False
    return True


def _key(spec: PortSpec) -> tuple[str, int, str, str]:
    return spec.name, spec.container_port, spec.protocol, spec.host_ip


class PortAllocator:
    """Reserves host ports in `range` (inclusive) for owners; thread-safe, one per state dir."""

    def __init__(self, state_dir: Path, range: tuple[int, int] = DEFAULT_RANGE) -> None:
        low, high = range
        if not 1 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self.path = Path(state_dir) / FILE_NAME
        self.range = (low, high)
        self._lock = threading.Lock()

    def allocate(
        self, owner: str, specs: Sequence[PortSpec], in_use: Collection[tuple[int, str]] = ()
    ) -> list[PortSpec]:
        """`specs` with `host_port` set, reserved for `owner` (replacing what it held before).

        A spec the owner already holds (same name, container port, protocol and
        host IP, and no other fixed host port asked) gets its port again. A fixed
        `host_port` is honoured when free, else StepFailed. `in_use`: the (port,
        protocol) pairs Docker containers publish.
        """
        with self._lock:
            state = self._load()
            held = {_key(spec): spec.host_port for spec in state.get(owner, [])}
            reserved: set[tuple[int, str]] = {
                (s.host_port, s.protocol) for other, theirs in state.items() if other != owner for s in theirs}
            result: list[PortSpec] = []
            for spec in specs:
                port = self._choose(spec, held.get(_key(spec)), reserved, set(in_use), owner)
                reserved.add((port, spec.protocol))
                result.append(spec.model_copy(update={"host_port": port}))
            state[owner] = result
            self._save(state)
            return result

    def release(self, owner: str) -> list[int]:
        """Drop the owner's reservations; the ports it held."""
        with self._lock:
            state = self._load()
            released = [spec.host_port for spec in state.pop(owner, [])]
            if released:
                self._save(state)
            return released

    def reserved(self) -> dict[str, list[PortSpec]]:
        """Every owner's reservations."""
        with self._lock:
            return self._load()

    def _choose(
        self, spec: PortSpec, previous: int | None, reserved: set[tuple[int, str]], in_use: set[tuple[int, str]],
        owner: str,
    ) -> int:
        if previous and spec.host_port in (0, previous) and (previous, spec.protocol) not in reserved:
            return previous  # resumed: its own container may be the one publishing it now
        taken = reserved | in_use
        if spec.host_port:
            if (spec.host_port, spec.protocol) in taken or not port_is_bindable(
                    spec.host_port, spec.protocol, spec.host_ip):
                raise StepFailed(f"host port {spec.host_port}/{spec.protocol} for {owner} is already in use")
            return spec.host_port
        low, high = self.range
        for port in range(low, high + 1):
            if (port, spec.protocol) not in taken and port_is_bindable(port, spec.protocol, spec.host_ip):
                return port
        raise StepFailed(f"no free {spec.protocol} host port left in {low}-{high} for {owner}")

    def _load(self) -> dict[str, list[PortSpec]]:
        try:
            raw: Any = json.loads(self.path.read_bytes())
            owners = raw["owners"]
            return {str(owner): [PortSpec.model_validate(s) for s in specs] for owner, specs in owners.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
            log.warning("port reservations in %s are unreadable (%s); starting over", self.path, exc)
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".json.corrupt"))
            return {}

    def _save(self, state: dict[str, list[PortSpec]]) -> None:
        owners = {owner: [spec.model_dump(mode="json") for spec in specs] for owner, specs in state.items() if specs}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"version": 1, "owners": owners}, indent=1, sort_keys=True).encode())
