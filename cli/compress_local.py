"""``netreduce compress``: one job run in this process, without the service.

The library's path for notebooks and scripts: train the base model (or load it from a cache folder,
keyed by architecture, data set, epochs and seed), run the technique through ``compress.runner``
exactly as a worker would, and print the rows with ``/comparison``'s fields (declared once in
``compress.result_columns``): the baseline first, ratios and speedups against it, the Pareto flag.
Nothing is stored except the cached base model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compress.result_columns import FRONT, RESULT_COLUMNS

BASELINE = "baseline"
COMPARISON_FIELDS: tuple[str, ...] = (*(c.name for c in RESULT_COLUMNS if c.in_comparison), FRONT.name)
"""The keys of every printed row, in ``/comparison``'s order."""


def add_parser(sub: Any) -> None:
    c = sub.add_parser(
        "compress",
        help="run one compression job locally (no server) and print its rows",
        description="Train (or load from --cache-dir) the base model, run one technique in this process and "
        "print the baseline and variant rows with /comparison's fields.",
    )
    c.add_argument("--model", required=True, help="architecture name (GET /architectures lists them)")
    c.add_argument("--dataset", default=None, help="data set spec (default: the architecture's)")
    c.add_argument("--technique", required=True)
    c.add_argument("--params", default="{}", help="the technique's parameters as a JSON object")
    c.add_argument("--epochs", type=int, default=None, help="base model training epochs (default: the architecture's)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--data-root", default="data")
    c.add_argument("--cache-dir", default=None, help="keep/reuse trained base models here (.safetensors)")
    c.add_argument("--latency-runs", type=int, default=20)
    c.add_argument("--calibration-samples", type=int, default=1000)
    c.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads for training and timing (default: the service's NETREDUCE_TORCH_THREADS, "
        "so that local and service latencies compare)",
    )
    c.add_argument("--json", action="store_true", help="print the rows as a JSON list (otherwise a table)")
    c.set_defaults(func=cmd_compress)


def _cache_path(cache_dir: str, model: str, dataset: str, epochs: int, seed: int) -> Path:
    key = hashlib.sha256(json.dumps([model, dataset, epochs, seed]).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{model}-e{epochs}-s{seed}-{key}.safetensors"


def base_model(args: argparse.Namespace, log: Any) -> tuple[Any, Any, Any, Any, Any]:
    """``(model, spec, measurement, data, train config)`` of the base model: trained, or loaded from
    the cache and measured again (so that its latencies come from the same session as the variants')."""
    from compress.architectures import get_architecture
    from compress.baseline import resolve_spec, train_baseline
    from compress.datasets import load_dataset
    from compress.measure import measure
    from compress.persistence import load_model, save_model
    from compress.training import TrainConfig

    arch = get_architecture(args.model)
    dataset = args.dataset or arch.default_dataset
    data = load_dataset(dataset, root=args.data_root, seed=args.seed)
    spec = resolve_spec(args.model, data.input_shape, max(arch.num_classes, data.num_classes))
    given = {"epochs": args.epochs}
    cfg = TrainConfig(**{**arch.training, **{k: v for k, v in given.items() if v is not None}, "seed": args.seed})
    cached = _cache_path(args.cache_dir, args.model, dataset, cfg.epochs, args.seed) if args.cache_dir else None
    if cached is not None and cached.exists():
        log(f"base model: loaded from {cached}")
        model, spec = load_model(cached)
        return model, spec, measure(model, spec, data, latency_runs=args.latency_runs), data, cfg
    log(f"base model: training {args.model} on {dataset} for {cfg.epochs} epochs")
    base = train_baseline(spec, data, cfg, latency_runs=args.latency_runs)
    if cached is not None:
        save_model(base.model, base.spec, cached)
    return base.model, base.spec, base.measurement, data, cfg


def _row(m: Any, variant: dict[str, Any], base: Any, created: str) -> dict[str, Any]:
    """One row with /comparison's fields: ratios and speedups against ``base`` (measured in this session)."""
    out: dict[str, Any] = {}
    differ = m.latency_conditions.differences(base.latency_conditions) if m.latency_conditions else {"conditions": 1}
    for c in RESULT_COLUMNS:
        if not c.in_comparison:
            continue
        if c.origin == "measurement":
            value = getattr(m, c.name)
            out[c.name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
        elif c.origin == "variant":
            out[c.name] = variant.get(c.name)
        elif c.origin == "ratio":
            mine, theirs = getattr(m, c.ratio_of), getattr(base, c.ratio_of)
            out[c.name] = round(mine / theirs, 6) if mine is not None and theirs else None
        elif c.origin == "speedup" and c.ratio_of:
            mine, theirs = getattr(m, c.ratio_of), getattr(base, c.ratio_of)
            out[c.name] = round(theirs / mine, 4) if mine and theirs and not differ else None
        elif c.origin == "speedup":
            out[c.name] = f"measured under other conditions than the baseline: {sorted(differ)}" if differ else None
        elif c.name == "created_at":
            out[c.name] = created
        else:
            out[c.name] = None  # job_id: no job
    return out


def comparison_rows(base: Any, results: list[Any]) -> list[dict[str, Any]]:
    """The baseline and every result row (``compress.runner.RowResult``) as /comparison serves them."""
    from compress.pareto import annotate_pareto

    created = datetime.now(UTC).isoformat()
    head = {"label": BASELINE, "technique": BASELINE, "params": {}, "trial": False, "accuracy_drop": 0.0}
    rows = [_row(base, head, base, created)]
    for r in results:
        rows.append(_row(r.row.measurement, r.row.model_dump(mode="json"), base, created))
    return annotate_pareto(rows)


def _service_threads() -> int:
    from store.settings import get_settings

    return get_settings().torch_threads


def run_local(args: argparse.Namespace, log: Any = None) -> list[dict[str, Any]]:
    """Train or load the base model, run the job's one step, return the rows (baseline first)."""
    import torch

    from compress.runner import Runner, Step
    from compress.techniques.base import Context

    log = log or (lambda _msg: None)
    params = json.loads(args.params)
    if not isinstance(params, dict):
        raise ValueError("--params must be a JSON object, e.g. '{\"amount\": 0.5}'")
    torch.set_num_threads(args.threads or _service_threads())
    model, spec, base_m, data, cfg = base_model(args, log)
    steps = [Step(technique=args.technique, params=params)]
    ctx = Context(data, model, spec, base_m.accuracy, calibration_samples=args.calibration_samples)
    ctx.base_training = cfg
    ctx.progress = lambda frac, stage: log(f"{100 * frac:5.1f}%  {stage}")
    results = Runner(ctx, base_measurement=base_m, latency_runs=args.latency_runs).run(steps, model, spec)
    return comparison_rows(base_m, results)


def cmd_compress(args: argparse.Namespace) -> int:
    from rich.console import Console

    from compress.result_columns import TERMINAL_COLUMNS, columns, format_value

    err = Console(stderr=True)
    rows = run_local(args, log=None if args.json else lambda msg: err.print(f"[dim]{msg}[/dim]"))
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from rich.table import Table

    shown = columns([n for n in TERMINAL_COLUMNS if n in COMPARISON_FIELDS])
    table = Table(title=f"{args.model}: {args.technique}")
    for c in shown:
        table.add_column(c.heading)
    for row in rows:
        table.add_row(*(format_value(row.get(c.name), c.kind) for c in shown))
    Console().print(table)
    return 0
