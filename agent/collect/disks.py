"""Which mounts are real disks: psutil's physical partitions minus pseudo filesystems and bind mounts."""

from __future__ import annotations

import os
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]

__all__ = ["PSEUDO_FSTYPES", "io_device", "real_partitions"]

PSEUDO_FSTYPES = frozenset({
    "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
    "efivarfs", "fuse.lxcfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "pstore",
    "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
})


def real_partitions() -> list[Any]:
    """One partition per device (its shortest mount point), directories only, no pseudo filesystems."""
    by_device: dict[str, Any] = {}
    for part in psutil.disk_partitions(all=False):
        if part.fstype in PSEUDO_FSTYPES or not part.device or not os.path.isdir(part.mountpoint):
            continue
        known = by_device.get(part.device)
        if known is None or len(part.mountpoint) < len(known.mountpoint):
            by_device[part.device] = part
    return sorted(by_device.values(), key=lambda p: p.mountpoint)


def io_device(device: str) -> str:
    """The name `psutil.disk_io_counters(perdisk=True)` uses for `device` (/dev/mapper/x → dm-0)."""
    return os.path.basename(os.path.realpath(device)) if device.startswith("/dev/") else device
