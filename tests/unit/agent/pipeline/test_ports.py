"""`PortAllocator`: free ports without collisions, persisted, the same ones again for the same owner."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from agent.errors import StepFailed
from agent.pipeline.inputs import PortSpec
from agent.pipeline.ports import PortAllocator, port_is_bindable


def free_range(size: int = 20) -> tuple[int, int]:
    """A range of ports that are bindable now (checked one by one around a random free port; the ephemeral
    range is shared with every outgoing connection of the machine, so a range is tried again until one is)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            start = min(int(sock.getsockname()[1]), 65535 - size)
        if all(_bindable(port) for port in range(start, start + size)):
            return start, start + size - 1
    raise AssertionError(f"no {size} free ports in a row")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def specs(*ports: int, protocol: str = "tcp") -> list[PortSpec]:
    return [PortSpec(name=f"p{i}", container_port=port, protocol=protocol)  # type: ignore[arg-type]
            for i, port in enumerate(ports)]


def test_allocates_distinct_ports_and_persists_them(tmp_path: Path) -> None:
    low, high = free_range()
    ports = PortAllocator(tmp_path, range=(low, high))
    mine = ports.allocate("a", specs(8080, 8081))
    assert [s.container_port for s in mine] == [8080, 8081]
    assert len({s.host_port for s in mine}) == 2 and all(low <= s.host_port <= high for s in mine)
    theirs = ports.allocate("b", specs(8080))
    assert theirs[0].host_port not in {s.host_port for s in mine}
    saved = json.loads((tmp_path / "ports.json").read_text())
    assert set(saved["owners"]) == {"a", "b"}
    reloaded = PortAllocator(tmp_path, range=(low, high))
    assert reloaded.reserved() == {"a": mine, "b": theirs}


def test_same_owner_gets_the_same_ports_again_even_when_they_are_in_use(tmp_path: Path) -> None:
    ports = PortAllocator(tmp_path, range=free_range())
    first = ports.allocate("a", specs(8080))
    port = first[0].host_port
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", port))
        busy.listen()  # its own container publishes it now (a resumed run)
        again = PortAllocator(tmp_path, range=ports.range).allocate("a", specs(8080), in_use={(port, "tcp")})
    assert again == first


def test_skips_ports_in_use_by_containers_and_bound_sockets(tmp_path: Path) -> None:
    low, high = free_range()
    ports = PortAllocator(tmp_path, range=(low, high))
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("0.0.0.0", low + 1))
        busy.listen()
        got = ports.allocate("a", specs(1, 2), in_use={(low, "tcp")})
    assert low not in {s.host_port for s in got} and low + 1 not in {s.host_port for s in got}


def test_a_requested_host_port_is_honoured_when_free_and_refused_when_not(tmp_path: Path) -> None:
    low, high = free_range()
    ports = PortAllocator(tmp_path, range=(low, high))
    fixed = [PortSpec(name="game", container_port=80, host_port=low + 5)]
    assert ports.allocate("a", fixed)[0].host_port == low + 5
    with pytest.raises(StepFailed, match=rf"host port {low + 5}/tcp for b is already in use"):
        ports.allocate("b", fixed)
    udp = [PortSpec(name="game", container_port=80, host_port=low + 5, protocol="udp")]
    assert ports.allocate("b", udp)[0].host_port == low + 5  # another protocol: no collision


def test_release_frees_the_ports_for_others(tmp_path: Path) -> None:
    low, _ = free_range()
    ports = PortAllocator(tmp_path, range=(low, low))
    port = ports.allocate("a", specs(80))[0].host_port
    with pytest.raises(StepFailed, match="no free tcp host port left"):
        ports.allocate("b", specs(80))
    assert ports.release("a") == [port] and ports.release("a") == []
    assert ports.allocate("b", specs(80))[0].host_port == port


def test_unreadable_state_starts_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "ports.json").write_text("{not json")
    ports = PortAllocator(tmp_path, range=free_range())
    assert ports.reserved() == {}
    assert (tmp_path / "ports.json.corrupt").exists() and "unreadable" in caplog.text


def test_bad_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad port range"):
        PortAllocator(tmp_path, range=(30000, 20000))


def test_port_is_bindable_sees_a_listener() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert not port_is_bindable(busy.getsockname()[1], "tcp", "127.0.0.1")
