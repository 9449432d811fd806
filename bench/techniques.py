"""Every technique, fixed and search (1-point budget), on mnist-cnn over the shared MNIST split;
prints the comparison table with wall time per job, then the per-technique targets.

Usage: python -m bench.techniques [--threads 2] [--quick] [--only prune-l1,quantize-int8] [--no-search]

The base model is trained with mnist-cnn's training defaults once and cached under ``var/bench/``
(``--retrain`` ignores the cache). ``--quick`` is a smoke run: 1-epoch base model on 2,000 training
images, 1-epoch narrow training, fewer latency passes; its figures do not stand for the targets.
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
    print_machine,
    print_target_lines,
    run_or_skip,
    set_threads,
    targets_table,
    training_config,
)
from bench.latency import CHANNELS_50, INT8, L1_GLOBAL_80, latency_targets  # noqa: E402


def fixed_params(quick: bool) -> dict[str, dict[str, Any]]:
    """One representative fixed job per technique; the target jobs use the issue's exact settings."""
    base_train = training_config().model_dump(include={"epochs", "lr", "batch_size"})
    narrow = {"width": 0.5, **base_train, **({"epochs": 1} if quick else {})}
    return {
        # the default (top_k=1: fc1, the heaviest) and one conv layer, which is tractable (see --max-job-s)
        "orthogonal": [{"epochs": 1}, {"layers": ["conv3"], "epochs": 1}],
        "separable": [{"epochs": 1}],
        "narrow": [narrow],
        "prune-l1": [L1_GLOBAL_80],
        "prune-channels": [CHANNELS_50],
        "quantize-int8": [INT8],
        "quantize-dynamic": [{}],
    }


def search_params(quick: bool) -> dict[str, dict[str, Any]]:
    """Search mode with the default 1-point budget and one epoch of (re)training per trial."""
    fixed = fixed_params(quick)
    narrow = {k: v for k, v in fixed["narrow"][0].items() if k != "width"}
    return {
        "orthogonal": {"epochs": 1},
        "separable": {"epochs": 1},
        "narrow": narrow,
        "prune-l1": {"scope": "global", "retrain": "finetune", "epochs": 1},
        "prune-channels": {"mode": "remove", "epochs": 1},
    }


SHOWN_ELSEWHERE = ("search", "max_accuracy_drop")  # the mode column and the title say these


def _params(params: dict[str, Any]) -> str:
    return compact_params({k: v for k, v in params.items() if k not in SHOWN_ELSEWHERE})


def job_rows(table: Table, job: Job, base: Base, mode: str) -> None:
    base_m = base.measurement
    if job.error:
        label = f"{job.technique}: [yellow]{job.error}[/]"
        table.add_row(label, mode, _params(job.params), *["—"] * 9, f"{job.wall_s:.1f}", end_section=True)
        return
    chosen = [r for r in job.rows if not r.trial]
    for i, r in enumerate(job.rows):
        m = r.measurement
        last = i == len(job.rows) - 1
        label = r.label + (" [yellow](no trial within budget)[/]" if r.trial and not chosen and last else "")
        table.add_row(
            label,
            "trial" if r.trial else mode,
            _params(r.params),
            f"{m.n_params:,}",
            f"{m.bytes:,}",
            f"{m.macs:,}",
            f"{m.ops:,}",
            fmt(m.accuracy),
            fmt(r.accuracy_drop),
            fmt(m.latency_ms_bs1, ".3f"),
            fmt(m.latency_ms_bs64, ".2f"),
            f"{m.bytes / base_m.bytes:.3f}",
            f"{job.wall_s:.1f}" if last else "",
            style="dim" if r.trial else None,
            end_section=last,
        )


def comparison_table(base: Base, jobs: list[tuple[str, Job]], title: str) -> Table:
    t = Table(title=title)
    cols = (
        "label",
        "mode",
        "params",
        "n_params",
        "bytes",
        "macs",
        "ops",
        "acc %",
        "drop pt",
        "bs1 ms",
        "bs64 ms",
        "size ×",
        "job wall s",
    )
    for c in cols:
        t.add_column(c, justify="left" if c in ("label", "mode", "params") else "right", overflow="fold")
    m = base.measurement
    t.add_row(
        "baseline (mnist-cnn)",
        "base",
        compact_params(training_config().model_dump(include={"epochs", "lr", "batch_size"})),
        f"{m.n_params:,}",
        f"{m.bytes:,}",
        f"{m.macs:,}",
        f"{m.ops:,}",
        fmt(m.accuracy),
        "0.00",
        fmt(m.latency_ms_bs1, ".3f"),
        fmt(m.latency_ms_bs64, ".2f"),
        "1.000",
        "cached" if base.cached else f"{base.train_s:.1f}",
        end_section=True,
    )
    for mode, job in jobs:
        job_rows(t, job, base, mode)
    return t


def technique_targets(base: Base, jobs: dict[tuple[str, str], Job], rounds: int, runs: int) -> list[Target]:
    int8 = jobs[("fixed", "quantize-int8")]
    channels = jobs[("fixed", "prune-channels")]
    targets, _ = latency_targets(base, int8, channels, rounds, runs, item_int8="int8", item_channels="channels")
    targets = [t for t in targets if "batch 1" not in t.what]  # the technique targets are at batch 64 only
    l1 = jobs[("fixed", "prune-l1")]
    if l1.error or not l1.rows:
        targets.append(Target("l1", "prune-l1 global 80 % + 1 epoch fine-tune", "—", "≥ base − 0.3", None, l1.error))
    else:
        acc = l1.rows[0].measurement.accuracy
        floor = base.measurement.accuracy - 0.3
        targets.append(
            Target(
                "l1",
                "prune-l1 global 80 % + 1 epoch fine-tune accuracy",
                f"{acc:.2f} %",
                f"≥ {floor:.2f} % (base − 0.3)",
                acc >= floor,
                f"base {base.measurement.accuracy:.2f} %",
            )
        )
    return targets


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--quick", action="store_true", help="short smoke run (figures do not stand for the targets)")
    p.add_argument("--only", default="", help="comma-separated technique names (default: all registered)")
    p.add_argument("--no-search", action="store_true", help="fixed jobs only")
    p.add_argument("--rounds", type=int, default=7, help="interleaved latency rounds for the targets")
    p.add_argument(
        "--max-job-s", type=float, default=900.0, help="skip a job whose measured probe projects it beyond this"
    )
    args = p.parse_args()
    set_threads(args.threads)
    if args.quick:
        args.latency_runs = min(args.latency_runs, 5)
        args.rounds = min(args.rounds, 3)

    from compress.techniques import list_techniques

    record = machine_record(args.threads)
    print_machine(record, "machine (load average at the start)")
    t0 = time.perf_counter()
    base = get_base(
        args.data,
        args.seed,
        args.retrain,
        args.latency_runs,
        epochs=1 if args.quick else None,
        n_train=2000 if args.quick else None,
    )
    console.print(
        f"base model: {'loaded from ' + str(base.path) if base.cached else f'trained in {base.train_s:.1f} s'}; "
        f"{len(base.data.train_x):,} train / {len(base.data.eval_x):,} eval images"
    )
    wanted = [n for n in args.only.split(",") if n]
    techniques = [t for t in list_techniques() if not wanted or t.name in wanted]
    fixed, search = fixed_params(args.quick), search_params(args.quick)
    jobs: dict[tuple[str, str], Job] = {}
    ordered: list[tuple[str, Job]] = []
    for tech in techniques:
        keep = tech.name in ("quantize-int8", "prune-channels")
        modes = [("fixed", params) for params in fixed.get(tech.name, [{}])]
        if not args.no_search:
            if tech.search_axis is None:
                ordered.append(("search", Job(tech.name, tech.name, {"search": True}, error="no search mode")))
            else:
                modes.append(("search", {"search": True, "max_accuracy_drop": 1.0, **search.get(tech.name, {})}))
        for mode, params in modes:
            console.print(f"[dim]{mode:6} {tech.name} {compact_params(params)} ...[/]", end=" ")
            job = run_or_skip(
                base, tech.name, params, args.latency_runs, args.max_job_s, keep_model=keep and mode == "fixed"
            )
            console.print(f"[dim]{job.wall_s:.1f} s{' — ' + job.error if job.error else ''}[/]")
            jobs.setdefault((mode, tech.name), job)
            ordered.append((mode, job))
    total = time.perf_counter() - t0
    title = (
        f"mnist-cnn on the shared MNIST split: every technique, fixed and search (budget 1 pt) — "
        f"{args.threads} threads, {record['cpu']}{' — QUICK smoke run' if args.quick else ''}"
    )
    console.print(comparison_table(base, ordered, title))
    console.print(f"total wall time {total:.1f} s (base model {'cached' if base.cached else 'trained'})")
    if all(k in jobs for k in (("fixed", "quantize-int8"), ("fixed", "prune-channels"), ("fixed", "prune-l1"))):
        targets = technique_targets(base, jobs, args.rounds, args.latency_runs)
        console.print(targets_table(targets, "technique targets (latency: interleaved rounds, same run)"))
        print_target_lines(targets)


if __name__ == "__main__":
    main()
