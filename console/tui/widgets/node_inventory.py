"""A node's hardware and network inventory as a few aligned lines."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from console.tui.fmt import human_bytes, labels_text, status_text

__all__ = ["NodeInventory", "inventory_rows"]


def _cpu(hw: dict[str, Any]) -> str:
    cpu = hw.get("cpu") or {}
    parts = [str(cpu.get("model") or "?")]
    if cpu.get("cores"):
        threads = f" / {cpu['threads']} threads" if cpu.get("threads") else ""
        parts.append(f"{cpu['cores']} cores{threads}")
    return " · ".join(parts)


def _gpus(hw: dict[str, Any]) -> str:
    models = Counter(f"{g.get('model', '?')} ({human_bytes(g.get('memory_mb', 0) * 2**20)})"
                     for g in hw.get("gpus") or [])
    return ", ".join(f"{n} x {model}" for model, n in sorted(models.items())) or "none"


def _disks(hw: dict[str, Any]) -> str:
    return ", ".join(f"{d.get('mount', '?')} {d.get('size_gb', '?')} GB" for d in hw.get("disks") or []) or "-"


def _interfaces(net: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for nic in net.get("interfaces") or []:
        addresses = ", ".join(nic.get("addresses") or []) or "-"
        speed = f" · {nic['speed_mbps']} Mb/s" if nic.get("speed_mbps") else ""
        state = "" if "up" not in nic else (" · up" if nic["up"] else " · down")
        rows.append((str(nic.get("name", "?")), f"{addresses}{speed}{state}"))
    return rows


def inventory_rows(node: dict[str, Any]) -> list[tuple[str, str | Text]]:
    """(name, value) lines of the node's inventory, status and labels."""
    hw: dict[str, Any] = node.get("hardware") or {}
    net: dict[str, Any] = node.get("network") or {}
    agent = hw.get("agent") or {}
    system = " · ".join(str(hw[k]) for k in ("os", "kernel", "arch", "hostname") if hw.get(k))
    rows: list[tuple[str, str | Text]] = [
        ("Status", status_text(str(node.get("status", ""))) + Text("  agent connected" if node.get("online")
                                                                   else "  agent not connected", style="dim")),
        ("Name", f"{node.get('name', '')} · {node.get('type', '')} · {node.get('location', '') or '-'}"),
        ("Model", str(node.get("model") or "-")),
        ("CPU", _cpu(hw)),
        ("Memory", human_bytes(hw["memory_mb"] * 2**20) if hw.get("memory_mb") else "-"),
        ("GPUs", _gpus(hw)),
        ("Disks", _disks(hw)),
        ("System", system or "-"),
        ("Agent", f"{agent.get('version', '-')} ({', '.join(agent.get('capabilities') or []) or '-'})"
         if agent else "never connected"),
        ("IP", str(net.get("primary_ip") or net.get("ip") or "-")),
        *_interfaces(net),
        ("Labels", labels_text(node.get("labels") or {}) or "-"),
    ]
    return rows


class NodeInventory(Static):
    """Hardware, network, agent and labels of one node; `show(node)` redraws it."""

    DEFAULT_CSS = """
    NodeInventory {
        height: auto;
        padding: 0 1;
    }
    """

    def show(self, node: dict[str, Any]) -> None:
        """Draw this node."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, value in inventory_rows(node):
            table.add_row(name, value)
        self.update(table)
