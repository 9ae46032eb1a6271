"""`agent.collect`: inventory keys, metric rates, and GPUs via NVML (absent NVML means no GPUs, never a crash)."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from agent.collect import gpu as gpu_module
from agent.collect.gpu import GpuCollector
from agent.collect.inventory import hardware, inventory, network, primary_ip
from agent.collect.metrics import MetricsCollector


def test_hardware_inventory_has_the_keys() -> None:
    data = hardware(GpuCollector())
    assert set(data) >= {"cpu", "memory_mb", "disks", "gpus", "hostname", "os", "kernel", "arch"}
    assert set(data["cpu"]) == {"model", "cores", "threads"}
    assert data["cpu"]["threads"] >= data["cpu"]["cores"] >= 1
    assert data["memory_mb"] > 0
    for disk in data["disks"]:
        assert set(disk) == {"mount", "device", "fstype", "size_gb"}
        assert disk["fstype"] not in ("tmpfs", "proc", "overlay")


def test_network_inventory_has_the_keys() -> None:
    data = network()
    assert set(data) == {"interfaces", "primary_ip"}
    assert data["interfaces"]
    for nic in data["interfaces"]:
        assert set(nic) == {"name", "addresses", "mac", "speed_mbps", "up"}
    lo = next(n for n in data["interfaces"] if n["name"] == "lo")
    assert "127.0.0.1" in lo["addresses"]


def test_primary_ip_is_not_loopback_when_another_address_exists() -> None:
    addresses = {a for n in network()["interfaces"] for a in n["addresses"] if "." in a and not a.startswith("127.")}
    if addresses:
        assert primary_ip("127.0.0.1") in addresses


def test_inventory_message_carries_both_structs() -> None:
    message = inventory(GpuCollector(), "127.0.0.1")
    assert message.hardware["hostname"]
    assert "cpu" in message.hardware
    assert "interfaces" in message.network


def test_two_samples_give_non_negative_rates() -> None:
    collector = MetricsCollector(GpuCollector())
    first = collector.sample(instances=2)
    with open("/dev/null", "wb") as sink:
        sink.write(b"x" * 4096)
    second = collector.sample(instances=2)
    for sample in (first, second):
        assert 0.0 <= sample.cpu_percent <= 100.0
        assert sample.memory_total_bytes >= sample.memory_used_bytes > 0
        assert sample.instances == 2
        assert sample.at.seconds > 0
        for disk in sample.disks:
            assert disk.total_bytes >= disk.used_bytes
            assert disk.read_bytes_per_s >= 0.0 and disk.write_bytes_per_s >= 0.0
        for nic in sample.nets:
            assert nic.rx_bytes_per_s >= 0.0 and nic.tx_bytes_per_s >= 0.0
            assert nic.interface != "lo"
    assert all(d.read_bytes_per_s == 0.0 == d.write_bytes_per_s for d in first.disks)


def test_rates_are_per_second_and_clamped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    counters = {"eth9": types.SimpleNamespace(bytes_recv=1000, bytes_sent=500)}
    monkeypatch.setattr("psutil.net_io_counters", lambda pernic: counters)
    collector = MetricsCollector(clock=lambda: now[0])
    collector.sample()
    now[0] += 2.0
    counters["eth9"] = types.SimpleNamespace(bytes_recv=3000, bytes_sent=100)  # tx went backwards: a reset
    nic = collector.sample().nets[0]
    assert (nic.interface, nic.rx_bytes_per_s, nic.tx_bytes_per_s) == ("eth9", 1000.0, 0.0)


# --- GPUs ------------------------------------------------------------------------


def test_no_nvml_library_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    gpus = GpuCollector()
    assert gpus.sample() == []
    assert gpus.inventory() == []
    assert not gpus.available
    assert "pynvml not installed" in gpus.unavailable_reason
    gpus.close()


class _NVMLError(Exception):
    pass


def _fake_nvml(init_error: Exception | None = None, power_error: bool = False) -> Any:
    module: Any = types.ModuleType("pynvml")
    module.NVMLError = _NVMLError
    module.NVML_TEMPERATURE_GPU = 0
    module.calls = []

    def init() -> None:
        module.calls.append("init")
        if init_error is not None:
            raise init_error

    def power(handle: int) -> int:
        if power_error:
            raise _NVMLError("Not Supported")
        return 250_000

    module.nvmlInit = init
    module.nvmlShutdown = lambda: module.calls.append("shutdown")
    module.nvmlDeviceGetCount = lambda: 2
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetName = lambda h: b"NVIDIA H200" if h == 0 else "NVIDIA L4"
    module.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=(h + 1) * 2**30, used=2**29)
    module.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=37, memory=5)
    module.nvmlDeviceGetTemperature = lambda h, sensor: 61
    module.nvmlDeviceGetPowerUsage = power
    return module


def test_nvml_init_failure_means_no_gpus(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fake = _fake_nvml(init_error=_NVMLError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = GpuCollector()
    with caplog.at_level("DEBUG", logger=gpu_module.__name__):
        assert gpus.sample() == []
        assert gpus.sample() == []
        assert gpus.inventory() == []
    assert fake.calls == ["init"]  # initialised (tried) once, not per sample
    assert caplog.text.count("no GPU metrics") == 1


def test_real_pynvml_without_a_gpu_does_not_raise() -> None:
    gpus = GpuCollector()
    samples = gpus.sample()
    assert isinstance(samples, list)
    if not samples:
        assert gpus.unavailable_reason
    gpus.close()


def test_gpu_samples_from_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_nvml(power_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus = GpuCollector()
    assert gpus.inventory() == [
        {"index": 0, "model": "NVIDIA H200", "memory_mb": 1024},
        {"index": 1, "model": "NVIDIA L4", "memory_mb": 2048},
    ]
    first, second = gpus.sample()
    assert (first.index, first.name, first.utilization_percent, first.temperature_c) == (0, "NVIDIA H200", 37.0, 61.0)
    assert (first.memory_total_bytes, first.memory_used_bytes) == (2**30, 2**29)
    assert first.power_w == 0.0  # NotSupported leaves the field at 0
    assert second.name == "NVIDIA L4"
    assert gpus.available
    gpus.close()
    assert fake.calls == ["init", "shutdown"]


def test_metrics_include_gpu_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml())
    sample = MetricsCollector(GpuCollector()).sample()
    assert [g.name for g in sample.gpus] == ["NVIDIA H200", "NVIDIA L4"]
    assert sample.gpus[0].power_w == 250.0
