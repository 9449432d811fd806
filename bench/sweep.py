"""The full sweep on mnist-cnn over the shared MNIST split, wall time per job, and
the peak memory of the process doing it.

The sweep is what ``netreduce up`` submits: training the base model with its defaults, then every job
of ``compress.sweep.default_sweep()`` (search mode where the technique has one, budget 1 point)
through the same ``Runner`` call the worker makes, one after the other in this process. Peak memory
is this process's VmHWM (peak RSS), reset just before the sweep starts when the kernel allows it.

Usage: python -m bench.sweep [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.table import Table  # noqa: E402

from bench.common import (  # noqa: E402
    Base,
    Job,
    Target,
    common_args,
    compact_params,
    console,
    fmt,
    get_base,
    machine_record,
    peak_rss_mb,
    print_machine,
    print_target_lines,
    reset_peak_rss,
    run_or_skip,
    set_threads,
    targets_table,
)

WALL_LIMIT_S = 600.0
RSS_LIMIT_MB = 1.5e9 / 2**20  # 1.5 GB in MiB (VmHWM is reported in KiB)


def sweep_table(base: Base, jobs: list[Job], peaks: dict) -> Table:
    t = Table(title="full sweep on mnist-cnn (search budget 1 pt), one job after the other")
    for c in ("job", "params", "rows", "chosen / result", "acc %", "drop pt", "MACs ×", "size ×", "wall s", "peak MiB"):
        t.add_column(c, justify="left" if c in ("job", "params", "chosen / result") else "right", overflow="fold")
    m = base.measurement
    t.add_row(
        "baseline (train)",
        "",
        "1",
        "mnist-cnn",
        fmt(m.accuracy),
        "0.00",
        "1.000",
        "1.000",
        "cached" if base.cached else f"{base.train_s:.1f}",
        f"{peaks.get('baseline', 0):,.0f}",
    )
    for job in jobs:
        peak = f"{peaks.get(id(job), 0):,.0f}"
        if job.error:
            cells = ("—", "—", "—", "—", f"{job.wall_s:.1f}", peak)
            t.add_row(job.technique, compact_params(job.params), "0", job.error, *cells)
            continue
        picked = [r for r in job.rows if not r.trial]
        r = picked[0] if picked else None
        trials = sum(r.trial for r in job.rows)
        t.add_row(
            job.technique,
            compact_params(job.params),
            f"{len(job.rows)}" + (f" ({trials} trials)" if trials else ""),
            r.label if r else "no trial within budget",
            fmt(r.measurement.accuracy) if r else "—",
            fmt(r.accuracy_drop) if r else "—",
            f"{r.measurement.macs / m.macs:.3f}" if r else "—",
            f"{r.measurement.bytes / m.bytes:.3f}" if r else "—",
            f"{job.wall_s:.1f}",
            peak,
        )
    return t


def run(args: argparse.Namespace, show: bool = True) -> tuple[list[Target], Base]:
    """Train the base model (not from the cache: the sweep includes it), then every sweep job."""
    from compress.sweep import default_sweep

    reset = reset_peak_rss()
    t0 = time.perf_counter()
    base = get_base(args.data, args.seed, retrain=not args.cached_base, latency_runs=args.latency_runs)
    peaks: dict[Any, float] = {"baseline": peak_rss_mb()}  # per job: VmHWM reset before each one
    jobs: list[Job] = []
    for entry in default_sweep(quick=args.quick):
        params: dict[str, Any] = entry["params"]
        console.print(f"[dim]sweep: {entry['technique']} {compact_params(params)} ...[/]", end=" ")
        reset_peak_rss()
        job = run_or_skip(base, entry["technique"], params, args.latency_runs, args.max_job_s)
        peaks[id(job)] = peak_rss_mb()
        console.print(f"[dim]{job.wall_s:.1f} s{' — ' + job.error if job.error else ''}[/]")
        jobs.append(job)
    measured = time.perf_counter() - t0
    peak = max(peaks.values())
    probes = sum(j.wall_s for j in jobs if j.projected_s is not None)  # probing is not sweep work
    projected = sum(j.projected_s or 0.0 for j in jobs)
    wall = measured - probes + projected
    if show:
        console.print(sweep_table(base, jobs, peaks))
    n_jobs = 1 + len(jobs)
    failed = [j.technique for j in jobs if j.error and j.projected_s is None]
    skipped = [j.technique for j in jobs if j.projected_s is not None]
    ran = n_jobs - len(skipped)
    note = f"{ran} jobs ran in {measured - probes:.0f} s (mean {(measured - probes) / ran:.0f} s/job)"
    if skipped:
        note += (
            f" + projected ≥ {projected:,.0f} s for skipped {', '.join(skipped)} "
            "(a measured lower bound: the sweep cannot finish sooner)"
        )
    if base.cached:
        note += "; base model from cache (not trained)"
    if failed:
        note += f"; FAILED jobs: {', '.join(failed)}"
    targets = [
        Target(
            "4",
            "full sweep wall time" + (" (incl. projected)" if skipped else ""),
            f"{'≥ ' if skipped else ''}{wall:,.0f} s",
            f"≤ {WALL_LIMIT_S:.0f} s",
            wall <= WALL_LIMIT_S,
            note,
        ),
        Target(
            "7",
            "peak RSS of the process doing the sweep",
            f"{peak:,.0f} MiB",
            f"≤ {RSS_LIMIT_MB:,.0f} MiB (1.5 GB)",
            peak <= RSS_LIMIT_MB,
            ("VmHWM, the max over jobs (reset before each)" if reset else "VmHWM since process start")
            + ("; skipped jobs were probed in a child process (its peak is in their row)" if skipped else ""),
        ),
    ]
    return targets, base


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="default_sweep(quick=True): shorter fine-tuning")
    p.add_argument("--cached-base", action="store_true", help="load the trained base model instead of training it")
    p.add_argument(
        "--max-job-s", type=float, default=900.0, help="skip a job whose measured probe projects it beyond this"
    )


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets, _ = run(args)
    console.print(targets_table(targets, "full sweep"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
