"""Issue 7 #5: fp32 evaluation throughput of mnist-cnn vs this CPU's measured matmul peak, same threads.

Throughput = our FLOP count per sample (2 × MACs, ``Measurement.flops``) × evaluation samples / wall
time of ``compress.training.evaluate`` (the library's evaluation: inference_mode, batches of 1,024).
Peak = the best GFLOP/s of a large square fp32 ``torch.mm`` (2·n³ FLOP), measured in the same run.
Diagnostics rows show other batch sizes, so a miss can be traced to batch size or to the model.

Usage: python -m bench.throughput [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import (  # noqa: E402
    Base,
    Target,
    common_args,
    console,
    get_base,
    machine_record,
    print_machine,
    print_target_lines,
    set_threads,
    targets_table,
)

PEAK_SIZES = (1024, 2048, 3072)


def _median_time(fn, repeats: int, warmup: int = 1) -> float:  # noqa: ANN001
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(repeats: int = 5, sizes: tuple[int, ...] = PEAK_SIZES) -> tuple[float, dict[int, float]]:
    """Best GFLOP/s over square fp32 matmuls of ``sizes`` (median time of ``repeats`` each)."""
    per_size = {}
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for n in sizes:
            a = torch.randn(n, n, generator=g)
            b = torch.randn(n, n, generator=g)
            out = torch.empty(n, n)
            t = _median_time(lambda a=a, b=b, out=out: torch.mm(a, b, out=out), repeats)
            per_size[n] = 2 * n**3 / t / 1e9
    return max(per_size.values()), per_size


def eval_throughput(base: Base, batch_size: int, repeats: int) -> tuple[float, float]:
    """(GFLOP/s, seconds) of ``evaluate`` over the whole evaluation split with ``batch_size``."""
    from compress.training import evaluate

    t = _median_time(lambda: evaluate(base.model, base.data, batch_size=batch_size), repeats)
    flop = base.measurement.flops * len(base.data.eval_x)
    return flop / t / 1e9, t


def run(args: argparse.Namespace, base: Base | None = None, show: bool = True) -> list[Target]:
    base = base or get_base(args.data, args.seed, args.retrain, args.latency_runs)
    peak, per_size = matmul_peak(args.repeats)
    library_bs = 1024
    rows = []
    for bs in (64, 256, library_bs, len(base.data.eval_x)):
        gflops, t = eval_throughput(base, bs, args.repeats)
        rows.append((bs, gflops, t))
    peak_after, _ = matmul_peak(args.repeats, sizes=(max(per_size, key=per_size.get),))
    peak = max(peak, peak_after)
    if show:
        t = Table(title=f"fp32 throughput, {torch.get_num_threads()} threads")
        for c in ("what", "batch", "seconds", "GFLOP/s", "% of peak"):
            t.add_column(c, justify="right" if c != "what" else "left")
        for n, gf in per_size.items():
            t.add_row(f"matmul {n}×{n}", "", "", f"{gf:.1f}", f"{100 * gf / peak:.0f}")
        t.add_row("matmul (repeated after)", "", "", f"{peak_after:.1f}", f"{100 * peak_after / peak:.0f}")
        for bs, gf, secs in rows:
            label = "evaluate() — library default" if bs == library_bs else "evaluate()"
            t.add_row(label, str(bs), f"{secs:.3f}", f"{gf:.1f}", f"{100 * gf / peak:.0f}")
        console.print(t)
        console.print(
            f"FLOP per sample {base.measurement.flops:,} (2 × MACs), {len(base.data.eval_x):,} samples per evaluation"
        )
    lib = next(r for r in rows if r[0] == library_bs)
    share = lib[1] / peak
    note = f"{lib[1]:.1f} of {peak:.1f} GFLOP/s; best batch {max(rows, key=lambda r: r[1])[0]}"
    return [
        Target("5", "fp32 evaluation throughput vs matmul peak", f"{100 * share:.0f} %", "≥ 40 %", share >= 0.4, note)
    ]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per figure (median)")


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets = run(args)
    console.print(targets_table(targets, "fp32 evaluation throughput (issue 7 #5)"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
