"""Pareto front of a comparison table: which rows are not beaten on every objective at once.

A row *dominates* another when it is at least as good on every objective and strictly better on at
least one. The front is the set of rows no other row dominates; with error, size and operations
pulling in different directions it is the honest short-list, before any weighting is chosen.

Missing values (``None`` or NaN, e.g. latency not measured): an objective is compared for a pair
of rows only when *both* rows have it. A row missing an objective is therefore neither dominating
nor dominated on that objective; the remaining objectives decide. A pair with no objective in
common does not dominate either way. A row with no value on any objective cannot be judged and is
flagged ``None``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Direction = Literal["max", "min"]

OBJECTIVE_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "accuracy_drop": "min",
    "n_params": "min",
    "bytes": "min",
    "file_bytes": "min",
    "macs": "min",
    "flops": "min",
    "ops": "min",
    "sparse_macs": "min",
    "latency_ms_bs1": "min",
    "latency_ms_bs64": "min",
    "ort_latency_ms_bs1": "min",
    "ort_latency_ms_bs64": "min",
    "size_ratio": "min",
    "ops_ratio": "min",
}
"""Every column that can be an objective, with the only sensible direction: accuracy up, the rest down."""

OBJECTIVE_ALIASES: dict[str, str] = {
    "size": "bytes",
    "latency": "latency_ms_bs64",
    "ort-latency": "ort_latency_ms_bs64",
}
"""Short names accepted in an ``objectives`` string."""

DEFAULT_OBJECTIVES = ("accuracy:max", "bytes:min", "ops:min", "latency_ms_bs64:min")


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Direction

    def __str__(self) -> str:
        return f"{self.name}:{self.direction}"


ObjectivesArg = str | Sequence[str | Objective]


def _valid_names() -> str:
    aliases = ", ".join(f"{a} (= {n})" for a, n in OBJECTIVE_ALIASES.items())
    return f"{', '.join(OBJECTIVE_DIRECTIONS)}; aliases: {aliases}"


def parse_objectives(objectives: ObjectivesArg = DEFAULT_OBJECTIVES) -> tuple[Objective, ...]:
    """Parse ``"accuracy,bytes,ops"`` (or a list of names, or ``name:max|min`` items) into objectives.

    Directions are known per column, so a bare name is enough; an explicit direction must agree
    with the known one (maximising bytes is a typo, not a wish). Duplicates are dropped, order kept.
    Raises ``ValueError`` naming the accepted columns on an unknown name.
    """
    items: list[str | Objective] = (
        [p for p in (s.strip() for s in objectives.split(",")) if p]
        if isinstance(objectives, str)
        else list(objectives)
    )
    if not items:
        raise ValueError(f"no objectives given; choose from: {_valid_names()}")
    out: list[Objective] = []
    for item in items:
        raw_name, _, raw_dir = str(item).strip().partition(":")
        name = OBJECTIVE_ALIASES.get(raw_name.strip().lower(), raw_name.strip().lower())
        if name not in OBJECTIVE_DIRECTIONS:
            raise ValueError(f"unknown objective '{raw_name.strip()}'; valid objectives: {_valid_names()}")
        known = OBJECTIVE_DIRECTIONS[name]
        direction = raw_dir.strip().lower()
        if direction and direction != known:
            raise ValueError(f"objective '{name}' is always '{known}' (got '{direction}'); write just '{name}'")
        obj = Objective(name, known)
        if obj not in out:
            out.append(obj)
    return tuple(out)


def objective_value(row: Mapping[str, Any], name: str) -> float | None:
    """The row's value for ``name`` as a float, or ``None`` when missing, not numeric or NaN."""
    v = row.get(name)
    if v is None or isinstance(v, bool) or not isinstance(v, numbers.Real):  # Real covers numpy scalars
        return None
    f = float(v)
    return None if math.isnan(f) else f


def dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: ObjectivesArg = DEFAULT_OBJECTIVES) -> bool:
    """True when ``a`` is at least as good as ``b`` on every objective both rows have, and strictly
    better on at least one of them (see the module docstring for missing values)."""
    return _dominates(a, b, parse_objectives(objectives))


def _dominates(a: Mapping[str, Any], b: Mapping[str, Any], objectives: Sequence[Objective]) -> bool:
    strictly_better = False
    for obj in objectives:
        va, vb = objective_value(a, obj.name), objective_value(b, obj.name)
        if va is None or vb is None:
            continue
        if obj.direction == "min":
            va, vb = -va, -vb
        if va < vb:
            return False
        if va > vb:
            strictly_better = True
    return strictly_better


def takes_part(row: Mapping[str, Any], include_trials: bool = False) -> bool:
    """Search trials (``trial=True``) are compared only when asked for; every other row always is."""
    return include_trials or not row.get("trial", False)


_PAIRS_PER_CHUNK = 1 << 20
"""Upper bound on the (row, row) pairs compared at once by :func:`pareto_flags` (memory: ~2 bytes each)."""


def objective_matrix(rows: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> np.ndarray:
    """Rows x objectives, as floats oriented so that larger is better (``min`` objectives negated);
    NaN where :func:`objective_value` is ``None``."""
    values = np.full((len(rows), len(objectives)), np.nan)
    for i, row in enumerate(rows):
        for k, obj in enumerate(objectives):
            v = objective_value(row, obj.name)
            if v is not None:
                values[i, k] = -v if obj.direction == "min" else v
    return values


def pareto_flags(
    rows: Sequence[Mapping[str, Any]],
    objectives: ObjectivesArg = DEFAULT_OBJECTIVES,
    include_trials: bool = False,
) -> list[bool | None]:
    """One flag per row, in order: ``True`` on the front, ``False`` dominated by a row that takes
    part, ``None`` not judged (a trial while ``include_trials`` is false, or a row with no value on
    any objective). Excluded rows neither sit on the front nor push others off it.

    Every pair is compared (the same test as :func:`dominates`), vectorised with numpy: a comparison
    with NaN is false both ways, so an objective one of the two rows lacks is neither better nor worse.
    """
    objs = parse_objectives(objectives)
    values = objective_matrix(rows, objs)
    judged = np.array([takes_part(r, include_trials) for r in rows], dtype=bool) & ~np.isnan(values).all(axis=1)
    idx = np.flatnonzero(judged)
    cand = values[idx]  # only judged rows dominate, and only they are judged
    beaten = np.zeros(len(idx), dtype=bool)
    step = max(1, _PAIRS_PER_CHUNK // max(1, len(idx)))
    for lo in range(0, len(idx), step):
        block = cand[lo : lo + step]  # the rows judged in this pass, against every candidate: (other, row)
        better = np.zeros((len(idx), len(block)), dtype=bool)
        worse = np.zeros_like(better)
        for k in range(cand.shape[1]):  # one objective at a time: 2-D comparisons, ~10x faster than 3-D any()
            better |= cand[:, k, None] > block[None, :, k]
            worse |= cand[:, k, None] < block[None, :, k]
        beaten[lo : lo + step] = (better & ~worse).any(axis=0)  # a row never dominates itself
    flags: list[bool | None] = [None] * len(rows)
    for i, b in zip(idx.tolist(), beaten.tolist(), strict=True):
        flags[i] = not b
    return flags


def annotate_pareto(
    rows: Sequence[Mapping[str, Any]],
    objectives: ObjectivesArg = DEFAULT_OBJECTIVES,
    include_trials: bool = False,
) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``pareto: bool`` added, the shape ``/comparison`` serves: rows that
    are not judged (see :func:`pareto_flags`) get ``False``, since they are not on the front."""
    flags = pareto_flags(rows, objectives, include_trials)
    return [{**row, "pareto": flag is True} for row, flag in zip(rows, flags, strict=True)]
