"""Latency against fp32 (also the technique targets' latency figures): quantize-int8 (fbgemm, and PyTorch's x86 engine
beside it) and prune-channels remove 50 % against the fp32 base model, latency measured in
interleaved rounds in this one run; the fp32 models also with PyTorch's own NCHW pooling (before
``compress.pooling``), as diagnostics.

Usage: python -m bench.latency [--threads 2] [--rounds 7] [--latency-runs 20]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

from bench.common import (  # noqa: E402
    Base,
    Job,
    Target,
    common_args,
    console,
    get_base,
    interleaved_latency,
    machine_record,
    print_machine,
    print_target_lines,
    run_job,
    set_threads,
    targets_table,
)
from compress.techniques.quantize import default_engine  # noqa: E402

INT8 = {"backend": "fbgemm"}
INT8_X86 = {"backend": "x86"}
"""PyTorch's x86 engine (oneDNN conv, FBGEMM linear): measured beside the issue's fbgemm."""
CHANNELS_50 = {"amount": 0.5, "mode": "remove", "epochs": 1}
L1_GLOBAL_80 = {"scope": "global", "amount": 0.8, "retrain": "finetune", "epochs": 1}
TORCH_POOLING = "fp32, PyTorch's NCHW pooling"


def with_torch_pooling(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose pooling layers are PyTorch's own ``nn.MaxPool2d`` / ``nn.AvgPool2d``
    instead of :mod:`compress.pooling`'s: the fp32 latency before that fix, for before/after rows."""
    from compress import pooling

    twin = copy.deepcopy(model)
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if type(child) is pooling.MaxPool2d:
                plain: nn.Module = nn.MaxPool2d(
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.return_indices,
                    child.ceil_mode,
                )
            elif type(child) is pooling.AvgPool2d:
                plain = nn.AvgPool2d(
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.ceil_mode,
                    child.count_include_pad,
                    child.divisor_override,
                )
            else:
                continue
            setattr(parent, name, plain)
    return twin


def _int8_targets(item: str, label: str, by_model: dict[str, dict[int, float]], job: Job, base_acc: float) -> list:
    """Target #2 is the default engine's (``quantize-int8`` with no params: PyTorch's default for this CPU, x86
    here): ≥ 4× at batch 64, ≥ 1.3× at batch 1, ≤ 0.5 point lost. Other engines' figures stay as reference."""
    target = label == default_engine()
    what = f"int8 ({label}{', the default engine' if target else ', reference'})"
    if label not in by_model:
        return [Target(item, f"{what} vs fp32", "—", "≥ 4× bs64", None, job.error or "no model")]
    fp32, int8 = by_model["fp32"], by_model[label]
    r64, r1 = fp32[64] / int8[64], fp32[1] / int8[1]
    acc = job.rows[0].measurement.accuracy
    goals = (("≥ 4×", r64 >= 4), ("≥ 1.3×", r1 >= 1.3), ("≤ 0.5 pt", base_acc - acc <= 0.5))
    shown = [(goal, ok) if target else ("—", None) for goal, ok in goals]
    figures = (
        ("latency ratio, batch 64", f"{r64:.2f}×", f"fp32 {fp32[64]:.2f} ms vs int8 {int8[64]:.2f} ms (p25)"),
        ("latency ratio, batch 1", f"{r1:.2f}×", f"fp32 {fp32[1]:.3f} ms vs int8 {int8[1]:.3f} ms (p25)"),
        ("accuracy loss", f"{base_acc - acc:.2f} pt", f"fp32 {base_acc:.2f} % vs int8 {acc:.2f} %"),
    )
    return [
        Target(item, f"{what} {name}", value, goal, ok, note)
        for (name, value, note), (goal, ok) in zip(figures, shown, strict=True)
    ]


def latency_targets(
    base: Base,
    int8: Job,
    channels: Job,
    rounds: int = 7,
    runs: int = 20,
    item_int8: str = "2",
    item_channels: str = "3",
    more_int8: dict[str, Job] | None = None,
) -> tuple[list[Target], dict[str, dict[int, float]]]:
    """Targets of int8 (``int8`` is fbgemm, the issue's; ``more_int8`` other engines by label) and
    prune-channels vs the fp32 base, from interleaved latency rounds. The fp32 models run with
    PyTorch's own pooling too (:data:`TORCH_POOLING`): the ratios before :mod:`compress.pooling`,
    reported as diagnostics (n/a), not as targets."""
    int8_jobs = {"fbgemm": int8, **(more_int8 or {})}
    models = {"fp32": base.model, TORCH_POOLING: with_torch_pooling(base.model)}
    for label, job in (*int8_jobs.items(), ("channels", channels)):
        if job.model is not None:
            models[label] = job.model
    if channels.model is not None:
        models[f"channels, {TORCH_POOLING}"] = with_torch_pooling(channels.model)
    shape = tuple(base.spec.input_shape)
    lat = {bs: interleaved_latency(models, shape, bs, rounds=rounds, runs=runs) for bs in (1, 64)}
    by_model = {name: {bs: lat[bs][name] for bs in lat} for name in models}
    base_acc = base.measurement.accuracy
    out: list[Target] = []
    for label, job in int8_jobs.items():
        out += _int8_targets(item_int8, label, by_model, job, base_acc)
    before = by_model[TORCH_POOLING][64]
    for label in int8_jobs:
        if label in by_model:
            r = before / by_model[label][64]
            note = f"{TORCH_POOLING} {before:.2f} ms vs int8 {by_model[label][64]:.2f} ms (before compress.pooling)"
            out.append(
                Target(
                    item_int8, f"(diagnostic) int8 ({label}) vs {TORCH_POOLING}, batch 64", f"{r:.2f}×", "—", None, note
                )
            )

    job = channels
    if "channels" in by_model:
        row = job.rows[0]
        r64 = by_model["fp32"][64] / by_model["channels"][64]
        macs = row.measurement.macs / base.measurement.macs
        loss = base_acc - row.measurement.accuracy
        note = f"fp32 {by_model['fp32'][64]:.2f} ms vs pruned {by_model['channels'][64]:.2f} ms (p25)"
        what = "prune-channels remove 50 % latency ratio, batch 64"
        out.append(Target(item_channels, what, f"{r64:.2f}×", "≥ 3×", r64 >= 3, note))
        old = by_model[f"channels, {TORCH_POOLING}"][64]
        note = f"{before:.2f} ms vs {old:.2f} ms (before compress.pooling)"
        out.append(
            Target(
                item_channels,
                "(diagnostic) the same, both with PyTorch's NCHW pooling",
                f"{before / old:.2f}×",
                "—",
                None,
                note,
            )
        )
        out.append(
            Target(item_channels, "prune-channels remove 50 % MACs ratio", f"{macs:.3f}×", "≤ 0.3×", macs <= 0.3)
        )
        out.append(
            Target(
                item_channels,
                "prune-channels remove 50 % accuracy loss (1 epoch fine-tune)",
                f"{loss:.2f} pt",
                "≤ 1 pt",
                loss <= 1.0,
                f"fp32 {base_acc:.2f} % vs pruned {row.measurement.accuracy:.2f} %",
            )
        )
    else:
        out.append(Target(item_channels, "prune-channels remove 50 %", "—", "≥ 3× bs64", None, job.error or "no model"))
    return out, by_model


def op_breakdown(
    models: dict[str, object], input_shape: tuple[int, ...], batch_size: int = 64, rounds: int = 5
) -> Table:
    """Self CPU ms per forward pass by aten/quantized op (torch.profiler), the median over interleaved
    rounds: where each model's time goes, so a latency ratio can be traced to the ops that limit it."""
    import statistics

    import torch
    from torch.profiler import ProfilerActivity, profile

    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    passes = 10
    per: dict[str, dict[str, list[float]]] = {name: {} for name in models}
    totals: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, model in models.items():
                model.eval()
                for _ in range(3):
                    model(x)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(passes):
                        model(x)
                total = 0.0
                for ev in prof.key_averages():
                    ms = ev.self_cpu_time_total / 1000 / passes
                    total += ms
                    per[name].setdefault(ev.key, []).append(ms)
                totals[name].append(total)
    med = {
        name: {op: statistics.median(v + [0.0] * (rounds - len(v))) for op, v in ops.items()}
        for name, ops in per.items()
    }
    ops = sorted({op for m in med.values() for op in m}, key=lambda op: -max(m.get(op, 0.0) for m in med.values()))
    t = Table(title=f"where the time goes: self CPU ms per pass at batch {batch_size} (median of {rounds} rounds)")
    t.add_column("op")
    for name in models:
        t.add_column(name, justify="right")
        t.add_column("%", justify="right")
    for op in ops[:10]:
        cells = []
        for name in models:
            v, tot = med[name].get(op, 0.0), statistics.median(totals[name])
            cells += [f"{v:.3f}" if v else "", f"{100 * v / tot:.0f}" if v else ""]
        t.add_row(op, *cells)
    t.add_row("total", *[c for name in models for c in (f"{statistics.median(totals[name]):.3f}", "100")])
    return t


def run(args: argparse.Namespace, base: Base | None = None) -> list[Target]:
    base = base or get_base(args.data, args.seed, args.retrain, args.latency_runs)
    int8 = run_job(base, "quantize-int8", INT8, args.latency_runs, keep_model=True)
    x86 = run_job(base, "quantize-int8", INT8_X86, args.latency_runs, keep_model=True)
    channels = run_job(base, "prune-channels", CHANNELS_50, args.latency_runs, keep_model=True)
    targets, _ = latency_targets(
        base, int8, channels, rounds=args.rounds, runs=args.latency_runs, more_int8={"x86": x86}
    )
    if getattr(args, "breakdown", False):
        models = {
            "fp32": base.model,
            TORCH_POOLING: with_torch_pooling(base.model),
            "prune-channels 50%": channels.model,
            "int8 fbgemm": int8.model,
            "int8 x86": x86.model,
        }
        console.print(op_breakdown({k: v for k, v in models.items() if v is not None}, tuple(base.spec.input_shape)))
    return targets


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rounds",
        type=int,
        default=7,
        help="interleaved latency rounds (ratios: lower quartile of all passes, as the table)",
    )
    p.add_argument("--breakdown", action="store_true", help="also print self CPU time per op (torch.profiler)")


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets = run(args)
    console.print(targets_table(targets, "int8 and prune-channels vs fp32"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
