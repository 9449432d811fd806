"""onnxruntime int8 on mnist-cnn: every static-quantization format against onnxruntime's own fp32, and where the
time goes (onnxruntime's per-node profile). Answers whether another quantizer setting than the export's (QDQ, u8
activations, s8 weights with 7 bits, per tensor) would reach issue 17's ≥ 3× at batch 64.

The float model is exported as ``compress.export_onnx`` exports it (netreduce pooling made PyTorch's), calibrated
on the same 1,000 training images, and quantized with onnxruntime's ``quantize_static`` in each setting below;
accuracy is on the whole evaluation split; latency at batch 64 in interleaved rounds (lower quartile of every
pass, as the table's speedups), ``--threads`` intra-op threads (default: the product's torch threads).

Usage: python -m bench.onnx_int8_formats [--threads 1] [--rounds 7] [--latency-runs 10]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import common_args, console, get_base, machine_record, print_machine, set_threads  # noqa: E402
from bench.onnx_latency import CALIBRATION  # noqa: E402

BATCH = 64


def settings() -> dict[str, dict[str, Any]]:
    from onnxruntime.quantization import QuantFormat, QuantType

    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    asym = {"ActivationSymmetric": False, "WeightSymmetric": True}
    return {
        "QDQ u8s8 per-tensor": {"quant_format": QuantFormat.QDQ, "per_channel": False, "extra": asym},
        "QDQ u8s8 per-channel": {"quant_format": QuantFormat.QDQ, "per_channel": True, "extra": asym},
        "QDQ u8s8 7-bit weights (the export's)": {"quant_format": QuantFormat.QDQ, "reduce_range": True, "extra": asym},
        "QOperator u8s8 per-tensor": {"quant_format": QuantFormat.QOperator, "extra": asym},
        "QOperator u8s8 per-channel": {"quant_format": QuantFormat.QOperator, "per_channel": True, "extra": asym},
        "QOperator u8u8": {
            "quant_format": QuantFormat.QOperator,
            "weight_type": u8,
            "extra": {"ActivationSymmetric": False, "WeightSymmetric": False},
        },
        "QDQ s8s8": {
            "quant_format": QuantFormat.QDQ,
            "activation_type": s8,
            "extra": {"ActivationSymmetric": True, "WeightSymmetric": True},
        },
    }


def quantize(float_onnx: Path, calibration: Any, name: str, how: dict[str, Any]) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantType, quantize_static

    from compress.export_onnx import _Batches

    dst = float_onnx.with_name(f"int8-{list(settings()).index(name)}.onnx")
    quantize_static(
        float_onnx,
        dst,
        _Batches(calibration),  # type: ignore[arg-type]
        quant_format=how["quant_format"],
        per_channel=how.get("per_channel", False),
        reduce_range=how.get("reduce_range", False),
        activation_type=how.get("activation_type", QuantType.QUInt8),
        weight_type=how.get("weight_type", QuantType.QInt8),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options=how["extra"],
    )
    return dst.read_bytes()


def node_profile(onnx: bytes, threads: int, shape: tuple[int, ...], passes: int = 20) -> dict[str, float]:
    """ms per pass by operator type, from onnxruntime's profiler."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    by: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="netreduce-ort-prof-") as tmp:
        so.profile_file_prefix = str(Path(tmp) / "p")
        s = ort.InferenceSession(onnx, so, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((BATCH, *shape), dtype=np.float32)
        for _ in range(passes):
            s.run(None, {s.get_inputs()[0].name: x})
        for e in json.loads(Path(s.end_profiling()).read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                op = e["args"].get("op_name", "?")
                by[op] = by.get(op, 0.0) + e["dur"] / passes / 1000
    return dict(sorted(by.items(), key=lambda kv: -kv[1]))


def passes_ms(session: Any, shape: tuple[int, ...], runs: int, warmup: int = 2) -> list[float]:
    """Wall ms of ``runs`` single passes at batch 64, after ``warmup`` (the seeded batch ``time_ort`` uses)."""
    from compress.export_onnx import time_ort

    for _ in range(warmup):
        time_ort(session, shape, BATCH, runs=1, warmup=0)
    return [time_ort(session, shape, BATCH, runs=1, warmup=0) for _ in range(runs)]


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))

    from compress.export_onnx import _bake, _torch_export, ort_predict, ort_session
    from compress.measure import latency_stats

    base = get_base(str(args.data), args.seed)
    shape = tuple(base.spec.input_shape)
    calibration = base.data.calibration_subset(CALIBRATION, args.seed)
    with tempfile.TemporaryDirectory(prefix="netreduce-int8-formats-") as work:
        float_onnx = Path(work) / "fp32.onnx"
        float_onnx.write_bytes(_torch_export(_bake(copy.deepcopy(base.model)), shape, 17))
        models = {"fp32": float_onnx.read_bytes()}
        models.update({name: quantize(float_onnx, calibration, name, how) for name, how in settings().items()})
    sessions = {name: ort_session(m, threads=args.threads) for name, m in models.items()}
    acc = {
        name: 100 * float((ort_predict(s, base.data.eval_x).argmax(1) == base.data.eval_y).float().mean())
        for name, s in sessions.items()
    }
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.rounds):
        for name, s in sessions.items():
            times[name] += passes_ms(s, shape, args.latency_runs)
    speed = {name: latency_stats(t).speed for name, t in times.items()}
    t = Table(title=f"onnxruntime int8 settings vs onnxruntime fp32, batch {BATCH}, {args.threads} thread(s)")
    for col in ("setting", "accuracy %", "ms (p25)", "ms (median)", "vs fp32", "top nodes (ms per pass)"):
        t.add_column(col)
    for name in models:
        nodes = list(node_profile(models[name], args.threads, shape).items())
        top = ", ".join(f"{op} {ms:.2f}" for op, ms in nodes[:3])
        t.add_row(
            name,
            f"{acc[name]:.2f}",
            f"{speed[name]:.2f}",
            f"{statistics.median(times[name]):.2f}",
            f"{speed['fp32'] / speed[name]:.2f}×",
            top,
        )
    console.print(t)


if __name__ == "__main__":
    main()
