"""fp32 evaluation throughput of mnist-cnn vs this CPU's measured matmul peak, same threads.

Throughput = our FLOP count per sample (2 × MACs, ``Measurement.flops``) × evaluation samples / wall
time of ``compress.training.evaluate`` (the library's evaluation: inference_mode, its default batch).
Peak = the best GFLOP/s of a large square fp32 ``torch.mm`` (2·n³ FLOP), measured in the same run.
Diagnostics rows show other batch sizes, so a miss can be traced to batch size or to the model.

Usage: python -m bench.throughput [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
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


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def matmul_gflops(n: int, repeats: int = 3) -> float:
    """GFLOP/s of a square fp32 ``torch.mm`` of size ``n`` (2·n³ FLOP), best of ``repeats`` after a warm-up."""
    g = torch.Generator().manual_seed(0)
    a, b, out = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g), torch.empty(n, n)
    with torch.inference_mode():
        torch.mm(a, b, out=out)
        t = min(_timed(lambda: torch.mm(a, b, out=out)) for _ in range(repeats))
    return 2 * n**3 / t / 1e9


def run(args: argparse.Namespace, base: Base | None = None, show: bool = True) -> list[Target]:
    """Interleaved rounds: each round measures the matmul peak, then evaluate() at every batch size, so
    a burst of load from other processes hits peak and throughput alike; per-round ratios, median."""
    import inspect

    from compress.training import evaluate

    base = base or get_base(args.data, args.seed, args.retrain, args.latency_runs)
    library_bs = inspect.signature(evaluate).parameters["batch_size"].default
    sizes = sorted({64, 128, 256, 1024, library_bs, len(base.data.eval_x)})
    flop = base.measurement.flops * len(base.data.eval_x)
    n_peak = max(PEAK_SIZES, key=lambda n: matmul_gflops(n, 2))  # pick the matmul size once
    peaks: list[float] = []
    gflops: dict[int, list[float]] = {bs: [] for bs in sizes}
    evaluate(base.model, base.data)  # warm-up
    for _ in range(args.repeats):
        peaks.append(matmul_gflops(n_peak))
        for bs in sizes:
            gflops[bs].append(flop / _timed(lambda bs=bs: evaluate(base.model, base.data, batch_size=bs)) / 1e9)
    share = {bs: statistics.median(g / p for g, p in zip(v, peaks, strict=True)) for bs, v in gflops.items()}
    peak = statistics.median(peaks)
    if show:
        t = Table(title=f"fp32 throughput, {torch.get_num_threads()} threads, {args.repeats} interleaved rounds")
        for c in ("what", "batch", "GFLOP/s (median)", "% of peak (median of per-round ratios)"):
            t.add_column(c, justify="right" if c != "what" else "left")
        t.add_row(f"matmul {n_peak}×{n_peak} (peak)", "", f"{peak:.1f}", f"min {min(peaks):.0f}, max {max(peaks):.0f}")
        for bs in sizes:
            label = "evaluate() — library default" if bs == library_bs else "evaluate()"
            t.add_row(label, str(bs), f"{statistics.median(gflops[bs]):.1f}", f"{100 * share[bs]:.0f}")
        console.print(t)
        console.print(
            f"FLOP per sample {base.measurement.flops:,} (2 × MACs), {len(base.data.eval_x):,} samples per evaluation"
        )
    ok = share[library_bs]
    best = max(share, key=share.get)
    note = (
        f"{statistics.median(gflops[library_bs]):.1f} of {peak:.1f} GFLOP/s at batch {library_bs} "
        f"(library default); best batch {best}: {100 * share[best]:.0f} %"
    )
    return [Target("5", "fp32 evaluation throughput vs matmul peak", f"{100 * ok:.0f} %", "≥ 40 %", ok >= 0.4, note)]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds (median)")


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets = run(args)
    console.print(targets_table(targets, "fp32 evaluation throughput"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
