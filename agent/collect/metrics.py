"""Host metrics samples: CPU, load, memory, per-mount disk use and I/O rates, per-interface rates, GPUs.

A `MetricsCollector` keeps the previous counters, so rates are per second over
the time between two `sample()` calls (0 on the first sample; a counter that
went backwards, e.g. after a NIC reset, counts as 0). No subprocesses; the
mount list is refreshed at most every `MOUNTS_TTL` seconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

from agent.collect.disks import io_device, real_partitions
from agent.collect.gpu import GpuCollector
from proto import gamenode_pb2 as pb

__all__ = ["MOUNTS_TTL", "MetricsCollector"]

MOUNTS_TTL = 60.0


class MetricsCollector:
    def __init__(self, gpu: GpuCollector | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.gpu = gpu
        self._clock = clock
        self._mounts: list[tuple[str, str]] = []
        """(mount point, I/O counter name) per real disk."""
        self._mounts_at = -MOUNTS_TTL
        self._prev_at: float | None = None
        self._prev_disk: dict[str, tuple[int, int]] = {}
        self._prev_net: dict[str, tuple[int, int]] = {}
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def sample(self, instances: int = 0) -> pb.MetricsSample:
        now = self._clock()
        elapsed = now - self._prev_at if self._prev_at is not None else 0.0
        self._prev_at = now
        memory = psutil.virtual_memory()
        load = os.getloadavg()
        sample = pb.MetricsSample(
            cpu_percent=psutil.cpu_percent(interval=None),
            load1=load[0],
            load5=load[1],
            load15=load[2],
            memory_total_bytes=memory.total,
            memory_used_bytes=memory.total - memory.available,
            memory_percent=memory.percent,
            instances=instances,
        )
        sample.at.GetCurrentTime()
        sample.disks.extend(self._disks(elapsed))
        sample.nets.extend(self._nets(elapsed))
        if self.gpu is not None:
            sample.gpus.extend(self.gpu.sample())
        return sample

    def _disks(self, elapsed: float) -> list[pb.DiskSample]:
        if self._clock() - self._mounts_at >= MOUNTS_TTL:
            self._mounts = [(p.mountpoint, io_device(p.device)) for p in real_partitions()]
            self._mounts_at = self._clock()
        counters = _perdisk()
        current: dict[str, tuple[int, int]] = {}
        out = []
        for mount, device in self._mounts:
            try:
                usage = psutil.disk_usage(mount)
            except OSError:
                continue
            disk = pb.DiskSample(mount=mount, total_bytes=usage.total, used_bytes=usage.used, percent=usage.percent)
            io = counters.get(device)
            if io is not None:
                current[device] = (io.read_bytes, io.write_bytes)
                disk.read_bytes_per_s, disk.write_bytes_per_s = _rates(current[device], self._prev_disk.get(device),
                                                                       elapsed)
            out.append(disk)
        self._prev_disk = current
        return out

    def _nets(self, elapsed: float) -> list[pb.NetSample]:
        current: dict[str, tuple[int, int]] = {}
        out = []
        for name, io in sorted(psutil.net_io_counters(pernic=True).items()):
            if name == "lo":
                continue
            current[name] = (io.bytes_recv, io.bytes_sent)
            rx, tx = _rates(current[name], self._prev_net.get(name), elapsed)
            out.append(pb.NetSample(interface=name, rx_bytes_per_s=rx, tx_bytes_per_s=tx))
        self._prev_net = current
        return out


def _perdisk() -> dict[str, Any]:
    try:
        return psutil.disk_io_counters(perdisk=True) or {}
    except (OSError, RuntimeError):  # no /proc/diskstats (some containers)
        return {}


def _rates(now: tuple[int, int], before: tuple[int, int] | None, elapsed: float) -> tuple[float, float]:
    if before is None or elapsed <= 0:
        return 0.0, 0.0
    return max(0.0, (now[0] - before[0]) / elapsed), max(0.0, (now[1] - before[1]) / elapsed)
