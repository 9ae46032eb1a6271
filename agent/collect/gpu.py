"""GPU inventory and samples via NVML (`pynvml`, from NVIDIA's nvidia-ml-py).

NVML is initialised once, on first use. No library, no driver or no GPU means
an empty list (logged once), never an exception: most game nodes have no GPU.
"""

from __future__ import annotations

import contextlib
import logging
from types import ModuleType
from typing import Any

from proto import gamenode_pb2 as pb

__all__ = ["GpuCollector"]

log = logging.getLogger(__name__)

_MIB = 1024 * 1024


class GpuCollector:
    """NVML handles, opened once; `close()` shuts NVML down."""

    def __init__(self) -> None:
        self._nvml: ModuleType | None = None
        self._handles: list[Any] = []
        self._names: list[str] = []
        self._tried = False
        self.unavailable_reason = ""
        """Why there are no GPU metrics ("" while NVML works)."""
        self._failed: set[tuple[int, str]] = set()

    @property
    def available(self) -> bool:
        return self._start() is not None and bool(self._handles)

    def inventory(self) -> list[dict[str, Any]]:
        """`[{index, model, memory_mb}]`, empty without NVML or GPUs."""
        nvml = self._start()
        if nvml is None:
            return []
        gpus: list[dict[str, Any]] = []
        for index, handle in enumerate(self._handles):
            memory = self._read(nvml, index, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
            total = int(memory.total) if memory is not None else 0
            gpus.append({"index": index, "model": self._names[index], "memory_mb": total // _MIB})
        return gpus

    def sample(self) -> list[pb.GpuSample]:
        nvml = self._start()
        if nvml is None:
            return []
        return [self._sample_one(nvml, index, handle) for index, handle in enumerate(self._handles)]

    def close(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:  # NVMLError and anything a broken driver raises
                log.debug("nvmlShutdown failed: %s", exc)
        self._nvml = None
        self._handles = []

    def _sample_one(self, nvml: ModuleType, index: int, handle: Any) -> pb.GpuSample:
        sample = pb.GpuSample(index=index, name=self._names[index])
        util = self._read(nvml, index, "utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        if util is not None:
            sample.utilization_percent = float(util.gpu)
        memory = self._read(nvml, index, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        if memory is not None:
            sample.memory_total_bytes = int(memory.total)
            sample.memory_used_bytes = int(memory.used)
        temp = self._read(nvml, index, "temperature", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU)
        if temp is not None:
            sample.temperature_c = float(temp)
        power = self._read(nvml, index, "power", nvml.nvmlDeviceGetPowerUsage, handle)
        if power is not None:
            sample.power_w = float(power) / 1000.0
        return sample

    def _read(self, nvml: ModuleType, index: int, what: str, func: Any, *args: Any) -> Any:
        """One NVML query; a failure (e.g. NotSupported) leaves the field at 0, logged once per GPU and field."""
        try:
            return func(*args)
        except nvml.NVMLError as exc:
            if (index, what) not in self._failed:
                self._failed.add((index, what))
                log.debug("GPU %d: cannot read %s: %s", index, what, exc)
            return None

    def _start(self) -> ModuleType | None:
        if self._tried:
            return self._nvml
        self._tried = True
        try:
            import pynvml  # type: ignore[import-untyped, unused-ignore]

            pynvml.nvmlInit()
        except ImportError as exc:
            self._give_up(f"pynvml not installed ({exc})")
            return None
        except Exception as exc:  # pynvml.NVMLError: no library, no driver, driver/library mismatch
            self._give_up(f"NVML unavailable ({exc})")
            return None
        try:
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]
        except Exception as exc:
            self._handles = []
            self._names = []
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()
            self._give_up(f"NVML cannot list GPUs ({exc})")
            return None
        self._nvml = pynvml
        log.info("NVML: %d GPU(s)%s", count, "".join(f", {n}" for n in self._names))
        return self._nvml

    def _give_up(self, reason: str) -> None:
        self.unavailable_reason = reason
        log.info("no GPU metrics: %s", reason)


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

