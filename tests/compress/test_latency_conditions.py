"""Every latency figure records what it was measured under (threads, engine, PyTorch, CPU, host)."""

from __future__ import annotations

import platform
import socket

import torch

from compress.baseline import Baseline
from compress.datasets import DatasetSplit
from compress.latency_conditions import LatencyConditions, cpu_features, cpu_model, latency_conditions
from compress.measure import Measurement, measure
from compress.techniques import Context, get_technique

X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R)  Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme

processor\t: 1
model name\t: Intel(R) Xeon(R)  Platinum 8375C CPU @ 2.90GHz
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
CPU part\t: 0xd0b

Hardware\t: BCM2835
Model\t\t: Raspberry Pi 5 Model B Rev 1.0
"""


def test_cpu_model_from_cpuinfo() -> None:
    assert cpu_model(X86_CPUINFO) == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert cpu_model(ARM_CPUINFO) == "Raspberry Pi 5 Model B Rev 1.0"
    assert cpu_model("") == (platform.processor() or platform.machine() or "unknown")
    assert cpu_model()  # this machine


def test_cpu_features_name_the_vector_width_and_the_int8_dot_product_instructions() -> None:
    vnni = X86_CPUINFO.replace("fpu vme", "fpu vme avx2 avx512f avx512_vnni amx_int8")
    assert cpu_features(vnni, "AVX512") == "AVX512, int8 dot product: AVX512-VNNI / AMX-INT8"
    assert cpu_features(X86_CPUINFO, "AVX2") == "AVX2, int8 dot product: none"
    arm = ARM_CPUINFO + "Features\t: fp asimd asimddp i8mm\n"
    assert cpu_features(arm, "DEFAULT") == "DEFAULT, int8 dot product: dotprod / i8mm"
    assert cpu_features("", "AVX2") is None  # no flags listed: unknown, not "none"
    here = cpu_features()
    assert here is not None and here.startswith(torch.backends.cpu.get_cpu_capability() + ", int8 dot product: ")
    assert latency_conditions().cpu_features == here


def test_cpu_features_are_compared_only_when_both_figures_carry_them() -> None:
    c = latency_conditions()
    older = c.model_copy(update={"cpu_features": None})  # a row measured before they were recorded
    assert c.differences(older) == {} and older.differences(c) == {}
    other = c.model_copy(update={"cpu_features": "AVX512, int8 dot product: AVX512-VNNI"})
    assert c.differences(other) == {"cpu_features": (c.cpu_features, other.cpu_features)}


def test_conditions_now() -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        c = latency_conditions(session_id="s1")
        assert c.torch_threads == 2
    finally:
        torch.set_num_threads(previous)
    assert c.torch_version == torch.__version__ and c.host == socket.gethostname()
    assert c.machine == platform.machine() and c.cpu_model == cpu_model()
    assert c.quantized_engine == torch.backends.quantized.engine and c.session_id == "s1"
    other = c.model_copy(update={"torch_threads": 1, "host": "worker-2", "quantized_engine": "qnnpack"})
    assert c.differences(c) == {}
    assert c.differences(other) == {"torch_threads": (2, 1), "host": (c.host, "worker-2")}  # not the engine


def test_measure_records_the_conditions_with_the_latencies(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    m = measure(digits_baseline.model, digits_baseline.spec, latency_runs=1, file_size=False)
    assert m.latency_ms_bs1 is not None and m.latency_conditions is not None
    assert m.latency_conditions.torch_threads == torch.get_num_threads() == m.torch_threads
    assert Measurement.model_validate(m.model_dump(mode="json")).latency_conditions == m.latency_conditions
    assert measure(digits_baseline.model, digits_baseline.spec, latency=False).latency_conditions is None
    # an int8 network runs under its own engine, whatever the process-wide one is
    tech = get_technique("quantize-int8")
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, calibration_samples=64)
    previous = torch.backends.quantized.engine
    for backend in ("qnnpack", "fbgemm"):
        if backend not in torch.backends.quantized.supported_engines:
            continue
        v = tech.apply(digits_baseline.model, digits_baseline.spec, tech.params_model(backend=backend), ctx)
        torch.backends.quantized.engine = "qnnpack" if backend != "qnnpack" else previous
        try:
            q = measure(v.model, v.spec, latency_runs=1, file_size=False)
        finally:
            torch.backends.quantized.engine = previous
        assert isinstance(q.latency_conditions, LatencyConditions)
        assert q.latency_conditions.quantized_engine == backend
