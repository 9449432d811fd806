"""Issue 7 #2 and #3 (and issue 3's latency targets): quantize-int8 (fbgemm) and prune-channels remove
50 % against the fp32 base model, latency measured in interleaved rounds in this one run.

Usage: python -m bench.latency [--threads 2] [--rounds 7] [--latency-runs 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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

INT8 = {"backend": "fbgemm"}
CHANNELS_50 = {"amount": 0.5, "mode": "remove", "epochs": 1}
L1_GLOBAL_80 = {"scope": "global", "amount": 0.8, "retrain": "finetune", "epochs": 1}


def latency_targets(
    base: Base,
    int8: Job,
    channels: Job,
    rounds: int = 7,
    runs: int = 20,
    item_int8: str = "2",
    item_channels: str = "3",
) -> tuple[list[Target], dict[str, dict[int, float]]]:
    """Targets of int8 and prune-channels vs the fp32 base, from interleaved latency rounds."""
    models = {"fp32": base.model}
    for label, job in (("int8", int8), ("channels", channels)):
        if job.model is not None:
            models[label] = job.model
    shape = tuple(base.spec.input_shape)
    lat = {bs: interleaved_latency(models, shape, bs, rounds=rounds, runs=runs) for bs in (1, 64)}
    by_model = {name: {bs: lat[bs][name] for bs in lat} for name in models}
    base_acc = base.measurement.accuracy
    out: list[Target] = []

    job = int8
    if "int8" in by_model:
        row = job.rows[0]
        r64 = by_model["fp32"][64] / by_model["int8"][64]
        r1 = by_model["fp32"][1] / by_model["int8"][1]
        loss = base_acc - row.measurement.accuracy
        note = f"fp32 {by_model['fp32'][64]:.2f} ms vs int8 {by_model['int8'][64]:.2f} ms"
        out.append(Target(item_int8, "int8 (fbgemm) latency ratio, batch 64", f"{r64:.2f}×", "≥ 4×", r64 >= 4, note))
        note = f"fp32 {by_model['fp32'][1]:.3f} ms vs int8 {by_model['int8'][1]:.3f} ms"
        out.append(Target(item_int8, "int8 (fbgemm) latency ratio, batch 1", f"{r1:.2f}×", "≥ 1.3×", r1 >= 1.3, note))
        out.append(
            Target(
                item_int8,
                "int8 (fbgemm) accuracy loss",
                f"{loss:.2f} pt",
                "≤ 0.5 pt",
                loss <= 0.5,
                f"fp32 {base_acc:.2f} % vs int8 {row.measurement.accuracy:.2f} %",
            )
        )
    else:
        out.append(Target(item_int8, "int8 (fbgemm) vs fp32", "—", "≥ 4× bs64", None, job.error or "no model"))

    job = channels
    if "channels" in by_model:
        row = job.rows[0]
        r64 = by_model["fp32"][64] / by_model["channels"][64]
        macs = row.measurement.macs / base.measurement.macs
        loss = base_acc - row.measurement.accuracy
        note = f"fp32 {by_model['fp32'][64]:.2f} ms vs pruned {by_model['channels'][64]:.2f} ms"
        what = "prune-channels remove 50 % latency ratio, batch 64"
        out.append(Target(item_channels, what, f"{r64:.2f}×", "≥ 3×", r64 >= 3, note))
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


def run(args: argparse.Namespace, base: Base | None = None) -> list[Target]:
    base = base or get_base(args.data, args.seed, args.retrain, args.latency_runs)
    int8 = run_job(base, "quantize-int8", INT8, args.latency_runs, keep_model=True)
    channels = run_job(base, "prune-channels", CHANNELS_50, args.latency_runs, keep_model=True)
    targets, _ = latency_targets(base, int8, channels, rounds=args.rounds, runs=args.latency_runs)
    return targets


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds (median of medians)")


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets = run(args)
    console.print(targets_table(targets, "int8 and prune-channels vs fp32 (issue 7 #2, #3)"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
