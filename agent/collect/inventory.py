"""Hardware and network inventory, sent in `Hello` (becomes GameNode.hardware / .network).

    hardware: {cpu: {model, cores, threads}, memory_mb, disks: [{mount, device, fstype, size_gb}],
               gpus: [{index, model, memory_mb}], hostname, os, kernel, arch}
    network:  {interfaces: [{name, addresses, mac, speed_mbps, up}], primary_ip}

Reads /proc and psutil only (no subprocesses); cheap enough for every connect.
"""

from __future__ import annotations

import platform
import socket
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import struct_pb2

from agent.collect.disks import real_partitions
from agent.collect.gpu import GpuCollector
from proto import gamenode_pb2 as pb

__all__ = ["hardware", "inventory", "network", "primary_ip"]

_GB = 1024**3
_LINK_FAMILY = getattr(psutil, "AF_LINK", -1)


def inventory(gpu: GpuCollector | None = None, route_to: str | None = None) -> pb.Inventory:
    """Both dicts as the `Inventory` message (`route_to`: the hub's host, to pick the primary IP)."""
    message = pb.Inventory()
    message.hardware.CopyFrom(to_struct(hardware(gpu)))
    message.network.CopyFrom(to_struct(network(route_to)))
    return message


def to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct


def hardware(gpu: GpuCollector | None = None) -> dict[str, Any]:
    uname = platform.uname()
    return {
        "cpu": {
            "model": _cpu_model() or uname.processor or uname.machine,
            "cores": psutil.cpu_count(logical=False) or psutil.cpu_count() or 0,
            "threads": psutil.cpu_count() or 0,
        },
        "memory_mb": psutil.virtual_memory().total // (1024 * 1024),
        "disks": [_disk(p) for p in real_partitions()],
        "gpus": gpu.inventory() if gpu is not None else [],
        "hostname": socket.gethostname(),
        "os": _os_name() or uname.system,
        "kernel": uname.release,
        "arch": uname.machine,
    }


def network(route_to: str | None = None) -> dict[str, Any]:
    addrs = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    interfaces = []
    for name in sorted(addrs):
        stat = stats.get(name)
        interfaces.append({
            "name": name,
            "addresses": [a.address.split("%", 1)[0] for a in addrs[name] if a.family in (socket.AF_INET,
                                                                                            socket.AF_INET6)],
            "mac": next((a.address for a in addrs[name] if a.family == _LINK_FAMILY), ""),
            "speed_mbps": stat.speed if stat is not None else 0,
            "up": bool(stat.isup) if stat is not None else False,
        })
    return {"interfaces": interfaces, "primary_ip": primary_ip(route_to, addrs)}


def primary_ip(route_to: str | None = None, addrs: dict[str, list[Any]] | None = None) -> str:
    """The source address towards `route_to` (no packet is sent) unless loopback, else the first non-loopback IPv4."""
    if route_to:
        try:
            family = socket.AF_INET6 if ":" in route_to else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.connect((route_to, 9))
                address = str(probe.getsockname()[0])
            if not address.startswith("127.") and address != "::1":
                return address
        except OSError:
            pass
    for _, entries in sorted((addrs if addrs is not None else psutil.net_if_addrs()).items()):
        for entry in entries:
            if entry.family == socket.AF_INET and not entry.address.startswith("127."):
                return str(entry.address)
    return ""


def _disk(partition: Any) -> dict[str, Any]:
    try:
        size = psutil.disk_usage(partition.mountpoint).total
    except OSError:
        size = 0
    return {
        "mount": partition.mountpoint,
        "device": partition.device,
        "fstype": partition.fstype,
        "size_gb": round(size / _GB, 1),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return ""


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return ""
    return release.get("PRETTY_NAME") or release.get("NAME", "")

