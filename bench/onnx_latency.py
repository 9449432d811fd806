"""Every technique on mnist-cnn, PyTorch eager vs onnxruntime (CPU provider) latency side by
side at batch 1 and 64, in interleaved rounds within this one run; and whether the int8 row reaches ≥ 3×
vs fp32 at batch 64 in onnxruntime too.

Each variant is exported with ``compress.export_onnx.export_onnx`` (int8: the float twin quantized by
onnxruntime's static QDQ quantizer on the same 1,000 calibration images as the eager variant), checked
for agreement with PyTorch on the whole evaluation split, then timed. Eager and onnxruntime use the same
thread count (``--threads``: torch.set_num_threads and intra_op_num_threads).

Measured here (AMD EPYC, AVX2 without VNNI, 2 threads, 2026-12-04): onnxruntime's fp32 is ~1.75× faster
than eager fp32 at batch 64 and ~3× at batch 1, but its int8 QDQ model is no faster than its fp32 one
(0.93-0.97×): the u8s8 QLinearConv kernels on AVX2 are not faster than the NCHWc fp32 convolutions, and
neither per-tensor weights, reduce_range, the QOperator format nor leaving conv1 (one input channel) in
fp32 changed that (8.4 ms fp32 vs 8.7-11.7 ms int8).

Usage: python -m bench.onnx_latency [--threads 2] [--rounds 7] [--latency-runs 20] [--quick] [--skip orthogonal]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import (  # noqa: E402
    Base,
    Target,
    common_args,
    compact_params,
    console,
    get_base,
    machine_record,
    print_machine,
    print_target_lines,
    set_threads,
    targets_table,
)
from bench.latency import CHANNELS_50, INT8, L1_GLOBAL_80  # noqa: E402

CALIBRATION = 1000


def jobs(quick: bool) -> dict[str, tuple[str, dict[str, Any]]]:
    """One fixed variant per technique (the settings of bench/techniques.py where tractable)."""
    return {
        "orthogonal conv3": ("orthogonal", {"layers": ["conv3"], "epochs": 1}),
        "separable": ("separable", {"epochs": 1}),
        "narrow 0.5": ("narrow", {"width": 0.5, "epochs": 1 if quick else 3, "batch_size": 128, "lr": 3e-3}),
        "prune-l1 global 80%": ("prune-l1", L1_GLOBAL_80),
        "prune-channels remove 50%": ("prune-channels", CHANNELS_50),
        "quantize-dynamic": ("quantize-dynamic", {}),
        "quantize-int8": ("quantize-int8", INT8),
    }


def make_variant(base: Base, technique: str, params: dict[str, Any]) -> tuple[Any, Any, float]:
    from compress.techniques.base import Context, Variant, get_technique

    tech = get_technique(technique)
    ctx = Context(base.data, base.model, base.spec, base.measurement.accuracy, calibration_samples=CALIBRATION)
    t0 = time.perf_counter()
    out = tech.apply(base.model, base.spec, tech.params_model(**params), ctx)
    v: Variant = out[0] if isinstance(out, list) else out
    return v.model, v.spec, time.perf_counter() - t0


@torch.inference_mode()
def predictions(model: Any, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + 512]).argmax(1) for i in range(0, len(x), 512)])


def run(args: argparse.Namespace) -> tuple[Table, list[Target]]:
    from compress.export_onnx import ExportError, export_onnx, ort_predict, ort_session, time_ort
    from compress.measure import measure_latency

    base = get_base(args.data, args.seed, args.retrain, args.latency_runs, n_train=2000 if args.quick else None)
    calibration = base.data.calibration_subset(CALIBRATION, args.seed)
    rows: dict[str, dict[str, Any]] = {"fp32": {"model": base.model, "spec": base.spec, "params": "", "apply_s": 0.0}}
    skip = {name.strip() for name in (args.skip or "").split(",") if name.strip()}
    for label, (technique, params) in jobs(args.quick).items():
        if technique in skip:
            continue
        model, spec, s = make_variant(base, technique, params)
        rows[label] = {"model": model, "spec": spec, "params": compact_params(params), "apply_s": s}
        console.print(f"{label}: applied in {s:.1f} s")
    y = base.data.eval_y
    for r in rows.values():
        t0 = time.perf_counter()
        try:
            exported = export_onnx(r["model"], r["spec"], calibration)
        except ExportError as exc:
            r["error"] = str(exc)
            continue
        r["export_s"], r["route"], r["onnx_bytes"] = (
            time.perf_counter() - t0,
            exported.info["route"],
            len(exported.data),
        )
        r["session"] = ort_session(exported.data, args.threads)
        eager, ort = predictions(r["model"], base.data.eval_x), ort_predict(r["session"], base.data.eval_x).argmax(1)
        r["agree"] = (eager == ort).float().mean().item() * 100
        r["acc_eager"] = (eager == y).float().mean().item() * 100
        r["acc_ort"] = (ort == y).float().mean().item() * 100

    shape = tuple(base.spec.input_shape)
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for bs in (1, 64):
            for label, r in rows.items():
                times.setdefault((label, "eager", bs), []).append(
                    measure_latency(r["model"], shape, bs, runs=args.latency_runs)
                )
                if "session" in r:
                    times.setdefault((label, "ort", bs), []).append(
                        time_ort(r["session"], shape, bs, runs=args.latency_runs)
                    )
    lat = {k: statistics.median(v) for k, v in times.items()}

    t = Table(
        title=f"eager vs onnxruntime, ms per batch (median of {args.rounds} interleaved rounds × "
        f"{args.latency_runs} runs), {args.threads} thread(s)"
    )
    cols = [
        "variant",
        "params",
        "route",
        "ONNX KB",
        "acc eager %",
        "acc ORT %",
        "agree %",
        "eager bs1",
        "ORT bs1",
        "eager bs64",
        "ORT bs64",
        "ORT/eager bs64",
        "vs fp32 eager bs64",
        "vs fp32 ORT bs64",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c in ("variant", "params", "route") else "right", overflow="fold")
    for label, r in rows.items():
        if "error" in r:
            t.add_row(label, r["params"], f"ExportError: {r['error']}", *[""] * (len(cols) - 3))
            continue
        e1, o1 = lat[(label, "eager", 1)], lat[(label, "ort", 1)]
        e64, o64 = lat[(label, "eager", 64)], lat[(label, "ort", 64)]
        t.add_row(
            label,
            r["params"],
            r["route"],
            f"{r['onnx_bytes'] / 1024:,.0f}",
            f"{r['acc_eager']:.2f}",
            f"{r['acc_ort']:.2f}",
            f"{r['agree']:.2f}",
            f"{e1:.3f}",
            f"{o1:.3f}",
            f"{e64:.2f}",
            f"{o64:.2f}",
            f"{o64 / e64:.2f}",
            f"{lat[('fp32', 'eager', 64)] / e64:.2f}×",
            f"{lat[('fp32', 'ort', 64)] / o64:.2f}×",
        )
    targets: list[Target] = []
    int8 = rows.get("quantize-int8", {})
    if "session" in int8:
        r64 = lat[("fp32", "ort", 64)] / lat[("quantize-int8", "ort", 64)]
        note = f"fp32 {lat[('fp32', 'ort', 64)]:.2f} ms vs int8 {lat[('quantize-int8', 'ort', 64)]:.2f} ms (ORT)"
        targets.append(Target("4", "int8 vs fp32 in onnxruntime, batch 64", f"{r64:.2f}×", "≥ 3×", r64 >= 3, note))
        d = abs(int8["acc_ort"] - int8["acc_eager"])
        note = f"eager int8 {int8['acc_eager']:.2f} % vs ORT int8 {int8['acc_ort']:.2f} %"
        targets.append(Target("2", "int8 accuracy, ORT vs eager", f"{d:.2f} pt", "≤ 0.3 pt", d <= 0.3, note))
    for label, r in rows.items():
        if label != "quantize-int8" and "agree" in r:
            ok = r["agree"] >= 99.5
            targets.append(Target("2", f"{label}: ORT agrees with PyTorch", f"{r['agree']:.2f} %", "≥ 99.5 %", ok))
    return t, targets


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds (median of medians)")
    p.add_argument("--quick", action="store_true", help="smoke run: base model on 2,000 training images")
    p.add_argument("--skip", default="", help="techniques to leave out, comma-separated (e.g. orthogonal: ~9 min)")
    args = p.parse_args()
    set_threads(args.threads)
    record = machine_record(args.threads)
    import onnxruntime

    record["onnxruntime"] = onnxruntime.__version__
    print_machine(record)
    table, targets = run(args)
    console.print(table)
    console.print(targets_table(targets, "issue 17: onnxruntime agreement and int8 latency"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
