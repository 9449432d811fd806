"""What every benchmark script shares: the machine record, the shared MNIST split, a cached trained
mnist-cnn, timed Runner jobs, interleaved latency ratios and the PASS/FAIL target rows.

Benchmarks print tables; they never assert and never run in the unit-test suite. Every target is a
ratio of two things measured in the same run, because these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import re
import resource
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from compress.latency_conditions import cpu_features, cpu_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
CACHE_DIR = ROOT / "var" / "bench"
ARCH = "mnist-cnn"

console = Console(width=230)


# -- the machine -------------------------------------------------------------------------------


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine_record(threads: int) -> dict[str, Any]:
    """CPU, cores, torch threads, date and load average: what BENCHMARKS.md records with each run."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cores": os.cpu_count(),
        "torch_threads": threads,
        "torch": torch.__version__,
        "load_avg_1_5_15": load_average(),
    }


def print_machine(record: dict[str, Any], title: str = "machine") -> None:
    t = Table(title=title)
    t.add_column("what")
    t.add_column("value")
    for k, v in record.items():
        t.add_row(k, str(v))
    console.print(t)


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM) in MB; ru_maxrss (KiB on Linux) as a fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs); False if not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# -- arguments ---------------------------------------------------------------------------------


def product_threads() -> int:
    """The torch thread count the service measures latency with (``Settings.torch_threads``)."""
    from store.settings import get_settings

    return get_settings().torch_threads


def common_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--threads",
        type=int,
        default=product_threads(),
        help="torch.set_num_threads (default: the product's NETREDUCE_TORCH_THREADS, so bench and table agree)",
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="IDX folder of the shared MNIST split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency-runs", type=int, default=20, help="timed forward passes per latency figure")
    p.add_argument("--retrain", action="store_true", help="ignore the cached trained base model under var/bench/")
    return p


def set_threads(threads: int) -> None:
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


# -- the base model ----------------------------------------------------------------------------


@dataclass
class Base:
    data: Any
    model: nn.Module
    spec: Any
    measurement: Any
    train_s: float | None
    cached: bool
    path: Path


def load_data(path: str, seed: int = 0) -> Any:
    from compress.datasets import load_dataset

    return load_dataset(f"idx:{path}", seed=seed)


def _cache_path(data_path: str, cfg: Any, n_train: int | None) -> Path:
    key = json.dumps(
        {
            "arch": ARCH,
            "data": str(Path(data_path).resolve()),
            "n_train": n_train,
            "train": cfg.model_dump(),
            "torch": torch.__version__,
        },
        sort_keys=True,
    )
    return CACHE_DIR / f"{ARCH}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.safetensors"


def training_config(seed: int = 0, epochs: int | None = None) -> Any:
    from compress.architectures import get_architecture
    from compress.training import TrainConfig

    defaults = get_architecture(ARCH).training
    return TrainConfig(**{**defaults, "seed": seed, **({"epochs": epochs} if epochs is not None else {})})


def get_base(
    data_path: str,
    seed: int = 0,
    retrain: bool = False,
    latency_runs: int = 20,
    epochs: int | None = None,
    n_train: int | None = None,
) -> Base:
    """mnist-cnn trained with its training defaults on the shared split; trained once, then loaded
    from ``var/bench/`` (keyed by data path, training config and torch version). Always re-measured
    in this run, so ratios against it compare figures taken under the same load. ``n_train`` keeps
    only the first training images (smoke runs); the evaluation split stays whole."""
    from compress.baseline import resolve_spec, train_baseline
    from compress.measure import measure
    from compress.persistence import load_model, save_model

    data = load_data(data_path, seed)
    if n_train is not None:
        data = data.subset(n_train=n_train)
    cfg = training_config(seed, epochs)
    path = _cache_path(data_path, cfg, n_train)
    if path.exists() and not retrain:
        model, spec = load_model(path)
        m = measure(model, spec, data, latency_runs=latency_runs)
        return Base(data, model, spec, m, None, True, path)
    spec = resolve_spec(ARCH, data.input_shape, data.num_classes)
    t0 = time.perf_counter()
    result = train_baseline(spec, data, cfg, latency_runs=latency_runs)
    train_s = time.perf_counter() - t0
    save_model(result.model, result.spec, path)
    return Base(data, result.model, result.spec, result.measurement, train_s, False, path)


# -- jobs --------------------------------------------------------------------------------------


@dataclass
class Job:
    name: str
    technique: str
    params: dict[str, Any]
    rows: list[Any] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None
    model: Any = None
    projected_s: float | None = None  # a skipped job's measured lower bound


def run_or_skip(
    base: Base,
    technique: str,
    params: dict[str, Any],
    latency_runs: int = 20,
    max_job_s: float | None = None,
    keep_model: bool = False,
) -> Job:
    """``run_job``, unless a probe projects the job beyond ``max_job_s``: then a skipped Job saying why."""
    if max_job_s is not None:
        t0 = time.perf_counter()
        projected = projected_job_s(base, technique, params)
        if projected is not None and projected[0] > max_job_s:
            total, how = projected
            msg = f"skipped: projected ≥ {total / 60:,.0f} min > --max-job-s {max_job_s:.0f} s ({how})"
            return Job(technique, technique, params, error=msg, projected_s=total, wall_s=time.perf_counter() - t0)
    return run_job(base, technique, params, latency_runs, keep_model=keep_model)


def run_job(
    base: Base, technique: str, params: dict[str, Any], latency_runs: int = 20, name: str = "", keep_model: bool = False
) -> Job:
    """One Runner call (the same one the worker makes), timed; an exception becomes the job's error.

    ``keep_model`` keeps the first (or chosen) variant's model, for interleaved latency rounds."""
    from compress.runner import Runner, Step
    from compress.techniques.base import Context

    job = Job(name or technique, technique, params)
    ctx = Context(base.data, base.model, base.spec, base.measurement.accuracy)
    runner = Runner(ctx, base_measurement=base.measurement, latency_runs=latency_runs)
    t0 = time.perf_counter()
    try:
        results = runner.run([Step(technique=technique, params=params)], base.model, base.spec)
        job.rows = [r.row for r in results]
        if keep_model:
            job.model = next((r.model for r in results if r.model is not None and not r.row.trial), None)
    except NotImplementedError as exc:
        job.error = f"not implemented: {exc}"
    except Exception as exc:  # noqa: BLE001  (a benchmark reports every failure and goes on)
        job.error = f"{type(exc).__name__}: {exc}"
    job.wall_s = time.perf_counter() - t0
    return job


# -- jobs too slow to run -------------------------------------------------------------------


_STEP_PROBES: dict[tuple[int, tuple[str, ...], int], tuple[float, float, float]] = {}


def orthogonal_step_s(base: Base, layers: list[str], batch_size: int = 64) -> tuple[float, float, float]:
    """(setup s, one training step s, peak RSS MiB) of orthogonal fine-tuning on ``layers`` of the real
    base model: what one optimizer step of ``compress.techniques.orthogonal.apply`` costs on this machine
    now. Measured once per layer set in a run, in a child process, so that its memory (the backward
    of a tall Householder product holds m×m matrices) neither counts towards nor lingers in this one."""
    import multiprocessing as mp

    from compress.persistence import model_to_bytes

    key = (id(base.model), tuple(layers), batch_size)
    if key not in _STEP_PROBES:
        blob = model_to_bytes(base.model, base.spec)
        x, y = base.data.train_x[:batch_size].clone(), base.data.train_y[:batch_size].clone()
        with mp.get_context("spawn").Pool(1) as pool:
            _STEP_PROBES[key] = pool.apply(_orthogonal_step_child, (blob, x, y, layers, torch.get_num_threads()))
    return _STEP_PROBES[key]


def _orthogonal_step_child(
    blob: bytes, x: torch.Tensor, y: torch.Tensor, layers: list[str], threads: int
) -> tuple[float, float, float]:
    import torch.nn.functional as F

    from compress.persistence import model_from_bytes
    from compress.techniques.orthogonal import orthogonalize

    torch.set_num_threads(threads)
    model, _ = model_from_bytes(blob)
    t0 = time.perf_counter()
    model = orthogonalize(model, layers)
    setup = time.perf_counter() - t0
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return setup, time.perf_counter() - t0, peak_rss_mb()


def projected_job_s(base: Base, technique: str, params: dict[str, Any]) -> tuple[float, str] | None:
    """A measured lower bound of a job's wall time, for jobs that may take hours (None: no probe).

    orthogonal: PyTorch's ``householder_product`` backward grows with m²·n, so a tall orthogonal
    matrix (fc1 of mnist-cnn: 6272×256) costs minutes per step. The probe times one step on the layers
    the job (or a search's first trial, the heaviest layer) touches and multiplies by the steps the
    job needs: epochs × steps per epoch (× trials for a search, each at least that long).
    """
    if technique != "orthogonal":
        return None
    from compress.techniques import get_technique
    from compress.techniques.base import select_layers

    tech = get_technique(technique)
    p = tech.params_model.model_validate(params)
    eligible = tech.search_axis.eligible(base.model, base.spec, p) if tech.search_axis else []
    layers = eligible[:1] if p.search else select_layers(base.model, p, eligible)
    from compress.techniques.orthogonal import AUTO_MAX_ROWS, matrix_dims

    modules = dict(base.model.named_modules())
    tall = max(matrix_dims(modules[name].weight)[0] for name in layers) > AUTO_MAX_ROWS
    if p.train_orthogonal == "no" or (p.train_orthogonal == "auto" and tall):
        return None  # projected once and frozen: fine-tuning costs what the baseline's training does
    setup, step, peak = orthogonal_step_s(base, layers, p.batch_size)
    steps = p.epochs * math.ceil(len(base.data.train_x) / p.batch_size)
    trials = len(eligible) if p.search else 1
    total = trials * (setup + steps * step)
    how = f"measured {step:.2f} s/step (setup {setup:.1f} s) on {', '.join(layers)} × {steps} steps" + (
        f" × ≥ {trials} trials" if trials > 1 else ""
    )
    how += f"; the probe process peaked at {peak:,.0f} MiB RSS"
    return total, how


# -- latency -----------------------------------------------------------------------------------


def interleaved_latency(
    models: dict[str, nn.Module], input_shape: tuple[int, ...], batch_size: int, rounds: int = 7, runs: int = 20
) -> dict[str, float]:
    """ms per forward pass of each model as the table's speedups take it (``LatencyStats.speed``: the lower
    quartile of every pass), measured in alternating rounds so that a burst of load from other processes hits
    every model alike."""
    from compress.measure import latency_stats, time_forward

    per_model: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            per_model[name] += time_forward(model, input_shape, batch_size, runs=runs)
    return {name: latency_stats(v).speed for name, v in per_model.items()}


# -- tables ------------------------------------------------------------------------------------


def fmt(v: Any, spec: str = ",") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and spec == ",":
        return f"{v:,.2f}"
    return format(v, spec)


def compact_params(params: dict[str, Any]) -> str:
    return json.dumps(params, separators=(",", ":"))


@dataclass
class Target:
    """One issue target: what, the measured value, the goal and whether it is met (None: not measured)."""

    item: str
    what: str
    measured: str
    goal: str
    ok: bool | None
    note: str = ""

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else "PASS" if self.ok else "FAIL"


_NUMBER = re.compile(r"[-+]?\d[\d,]*\.?\d*")
_GOAL = re.compile(r"^\s*([≥≤])\s*([-+]?\d[\d,]*\.?\d*)")


def _number(text: str) -> float | None:
    m = _NUMBER.search(text)
    return float(m.group().replace(",", "")) if m else None


def merge_repeats(runs: list[list[Target]]) -> list[Target]:
    """One target per (item, what) from repeated runs: the median measured value with its range (min–max) and
    the number of repetitions; PASS/FAIL judged on the median against the goal (``≥ x`` / ``≤ x``)."""
    merged: list[Target] = []
    seen: dict[tuple[str, str], list[Target]] = {}
    for run in runs:
        for t in run:
            seen.setdefault((t.item, t.what), []).append(t)
    for same in seen.values():
        first = same[0]
        values = [v for v in (_number(t.measured) for t in same) if v is not None]
        if len(values) < 2:
            merged.append(first)
            continue
        med = statistics.median(values)
        unit = _NUMBER.sub("", first.measured, count=1).strip()
        digits = 3 if abs(med) < 10 else 2 if abs(med) < 1000 else 0
        shown = f"{med:,.{digits}f}{' ' + unit if unit and unit not in ('×', '%') else unit}"
        shown += f" ({min(values):,.{digits}f}–{max(values):,.{digits}f}, n={len(values)})"
        ok = first.ok
        goal = _GOAL.match(first.goal)
        if ok is not None and goal:
            bound = float(goal.group(2).replace(",", ""))
            ok = med >= bound if goal.group(1) == "≥" else med <= bound
        note = f"median of {len(values)} interleaved repetitions; first: {first.note}" if first.note else ""
        merged.append(Target(first.item, first.what, shown, first.goal, ok, note))
    return merged


def targets_table(targets: list[Target], title: str) -> Table:
    """The targets, titled with the conditions every latency target depends on: torch threads and the CPU's
    vector width and int8 instructions (an int8 ratio without VNNI / dotprod is a different claim)."""
    conditions = f"{torch.get_num_threads()} torch thread(s), {cpu_model()}: {cpu_features()}"
    t = Table(title=f"{title} — {conditions}", show_lines=False)
    for col in ("#", "target", "measured", "goal", "result", "note"):
        t.add_column(col, justify="right" if col in ("measured",) else "left", overflow="fold")
    for x in targets:
        style = {"PASS": "green", "FAIL": "red"}.get(x.verdict, "yellow")
        t.add_row(x.item, x.what, x.measured, x.goal, f"[{style}]{x.verdict}[/]", x.note)
    return t


def print_target_lines(targets: list[Target]) -> None:
    """Plain PASS/FAIL lines (greppable) under the table."""
    for x in targets:
        console.print(
            f"{x.verdict:4}  #{x.item} {x.what}: {x.measured} (goal {x.goal}){'  ' + x.note if x.note else ''}"
        )
