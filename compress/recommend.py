"""Recommend one row of a comparison table, and say why in data.

The course question: with error, size and operations to minimise, which option would you keep?
The answer here is a rule a student can check by hand:

1. **Constraint.** A row is a candidate when its accuracy drop versus the baseline is at most
   ``max_accuracy_drop`` points, it is not a search trial (unless ``include_trials``), and it has the
   metrics the priority needs. With ``no_significant_drop``, a row whose accuracy is significantly below the
   baseline's (``drop_significant`` and a positive drop: the exact paired McNemar test at the job's alpha)
   is excluded too, whatever the budget. The baseline is a candidate too (its drop is 0 by definition), so with
   a non-negative budget there is always an answer unless the baseline lacks a metric.
2. **Score.** Candidates are ranked by the priority's score, lowest first:

   - ``size``: ``bytes`` (parameter bytes at their stored dtype);
   - ``ops``: ``ops`` (MACs + activation operations per sample);
   - ``latency``: ``latency_ms_bs64`` (median ms per batch of 64);
   - ``balanced``: the geometric mean of the ratios to the baseline,
     ``(bytes/bytes_base · ops/ops_base · lat64/lat64_base) ** (1/3)``. A factor is left out when the
     baseline does not have it (e.g. latency not measured), and the formula reported says so. The
     geometric mean treats "half the size" and "half the operations" as equally good, whatever
     their units.

   Ties (equal score) go to the smaller accuracy drop, then to the earlier row.
3. **Reasoning.** The chosen row, the rows excluded and why, the rows the chosen one dominates (on
   the Pareto objectives), and the runner-up with the trade-off between them in words and numbers.

Ratios are recomputed here as ``variant / baseline`` from ``bytes``, ``ops`` and
``latency_ms_bs64``, so the answer does not depend on how a table's ``size_ratio`` column is oriented.
The score is strictly increasing in every minimised metric, so the chosen row is always on the
Pareto front of the candidates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from compress.pareto import DEFAULT_OBJECTIVES, ObjectivesArg, dominates, objective_value, parse_objectives, takes_part

Priority = Literal["size", "ops", "latency", "ort-latency", "balanced"]
ExclusionReason = Literal["over_budget", "significant_drop", "trial", "missing_metric"]

PRIORITY_METRICS: dict[str, tuple[str, ...]] = {
    "size": ("bytes",),
    "ops": ("ops",),
    "latency": ("latency_ms_bs64",),
    "ort-latency": ("ort_latency_ms_bs64",),
    "balanced": ("bytes", "ops", "latency_ms_bs64"),
}
METRIC_WORDS: dict[str, str] = {
    "bytes": "size",
    "ops": "ops",
    "latency_ms_bs64": "latency",
    "ort_latency_ms_bs64": "onnxruntime latency",
}
METRIC_UNITS: dict[str, str] = {
    "bytes": "bytes",
    "ops": "operations per sample",
    "latency_ms_bs64": "ms per batch of 64",
    "ort_latency_ms_bs64": "ms per batch of 64 in onnxruntime",
}
TIE_RELATIVE_TOLERANCE = 1e-9


class RowRef(BaseModel):
    """Which row of the input table: its position, label, technique and job."""

    index: int = Field(description="Position in the input rows (0 = first row).")
    label: str
    technique: str
    job_id: Any = None


class Exclusion(BaseModel):
    row: RowRef
    reasons: list[ExclusionReason]
    detail: str = Field(description="The reasons in words, with the numbers.")


class Candidate(BaseModel):
    row: RowRef
    score: float = Field(description="The priority's score (lower is better); unit in Recommendation.score_formula.")
    accuracy_drop: float = Field(description="Points of top-1 accuracy lost versus the baseline.")
    ratios: dict[str, float | None] = Field(description="bytes, ops and latency_ms_bs64 as variant / baseline.")


class TradeOff(BaseModel):
    """Chosen row versus runner-up. Percentages are ``(chosen / runner_up - 1) x 100``: negative is
    the chosen row being smaller / cheaper / faster. ``error_points`` is the chosen row's extra
    top-1 error in points (positive = the chosen row is less accurate)."""

    size_pct: float | None = None
    ops_pct: float | None = None
    latency_pct: float | None = None
    error_points: float | None = None
    text: str


class Recommendation(BaseModel):
    priority: Priority
    max_accuracy_drop: float
    constraint: str = Field(description="The constraint applied, in words.")
    score_formula: str = Field(description="How candidates were ranked (lower is better).")
    chosen: dict[str, Any] | None = Field(description="The recommended row as given, or None when nothing qualifies.")
    chosen_ref: RowRef | None = None
    chosen_is_baseline: bool = False
    ranking: list[Candidate] = Field(default_factory=list, description="Every candidate, best first.")
    excluded: list[Exclusion] = Field(default_factory=list)
    dominates: list[RowRef] = Field(
        default_factory=list, description="Rows the chosen one dominates on the Pareto objectives."
    )
    runner_up: RowRef | None = None
    trade_off: TradeOff | None = None
    message: str


def _ref(rows: Sequence[Mapping[str, Any]], i: int) -> RowRef:
    r = rows[i]
    return RowRef(
        index=i, label=str(r.get("label", f"row {i}")), technique=str(r.get("technique", "?")), job_id=r.get("job_id")
    )


def find_baseline(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the first row whose technique is ``baseline``, or None."""
    return next((i for i, r in enumerate(rows) if r.get("technique") == "baseline"), None)


def accuracy_drop(
    row: Mapping[str, Any], baseline: Mapping[str, Any] | None, is_baseline: bool = False
) -> float | None:
    """The row's ``accuracy_drop``, else ``baseline accuracy - row accuracy``; 0 for the baseline itself."""
    if is_baseline:
        return 0.0
    drop = objective_value(row, "accuracy_drop")
    if drop is not None:
        return drop
    acc = objective_value(row, "accuracy")
    base_acc = objective_value(baseline, "accuracy") if baseline is not None else None
    return None if acc is None or base_acc is None else base_acc - acc


def _ratio(row: Mapping[str, Any], baseline: Mapping[str, Any], metric: str) -> float | None:
    v, b = objective_value(row, metric), objective_value(baseline, metric)
    return None if v is None or b is None or b <= 0 else v / b


def _fmt_pct(x: float) -> str:
    return f"{'−' if x < 0 else '+'}{abs(x):.1f} %"


def _fmt_points(x: float) -> str:
    return f"{'−' if x < 0 else '+'}{abs(x):.2f} points"


def _cost_words(drop: float) -> str:
    if drop > 0:
        return f"for {drop:.2f} points of accuracy"
    if drop < 0:
        return f"and {-drop:.2f} points more accurate than the baseline"
    return "at no accuracy cost"


def trade_off(chosen: Mapping[str, Any], runner_up: Mapping[str, Any]) -> TradeOff:
    """What the chosen row gains and gives up against the runner-up, e.g. "−3.0 % size for +0.40
    points error"; the numbers behind the words are in the other fields."""
    pcts: dict[str, float | None] = {}
    for metric in ("bytes", "ops", "latency_ms_bs64"):
        a, b = objective_value(chosen, metric), objective_value(runner_up, metric)
        pcts[metric] = None if a is None or b is None or b <= 0 else (a / b - 1.0) * 100.0
    acc_a, acc_b = objective_value(chosen, "accuracy"), objective_value(runner_up, "accuracy")
    error_points = None if acc_a is None or acc_b is None else acc_b - acc_a

    gains: list[str] = []
    costs: list[str] = []
    for metric, pct in pcts.items():
        if pct is not None and abs(pct) >= 0.05:
            (gains if pct < 0 else costs).append(f"{_fmt_pct(pct)} {METRIC_WORDS[metric]}")
    if error_points is not None and abs(error_points) >= 0.005:
        (gains if error_points < 0 else costs).append(f"{_fmt_points(error_points)} error")
    who = f"versus runner-up '{runner_up.get('label')}'"
    if gains and costs:
        text = f"{', '.join(gains)} for {', '.join(costs)} ({who})"
    elif gains:
        text = f"{', '.join(gains)} at no cost on any measured metric ({who})"
    elif costs:
        text = f"{', '.join(costs)}: no measured gain ({who}; it ranked first on a tie-break)"
    else:
        text = f"equal on every measured metric ({who})"
    return TradeOff(
        size_pct=pcts["bytes"],
        ops_pct=pcts["ops"],
        latency_pct=pcts["latency_ms_bs64"],
        error_points=error_points,
        text=text,
    )


def recommend(
    rows: Sequence[Mapping[str, Any]],
    max_accuracy_drop: float = 1.0,
    priority: Priority = "size",
    include_trials: bool = False,
    objectives: ObjectivesArg = DEFAULT_OBJECTIVES,
    no_significant_drop: bool = False,
) -> Recommendation:
    """Choose the row to keep under an accuracy budget (points of top-1 vs the baseline) and a
    priority; see the module docstring for the exact rule and the ``balanced`` formula.

    ``objectives`` only decides which rows the chosen one is reported to dominate. Never raises on a
    budget that excludes everything: ``chosen`` is then None and ``message`` says what to relax.
    Raises ``ValueError`` on an unknown priority, a NaN budget, or a non-empty table without a
    baseline row (ratios and accuracy drops are measured against it).
    """
    if priority not in PRIORITY_METRICS:
        raise ValueError(f"unknown priority '{priority}'; valid priorities: {', '.join(PRIORITY_METRICS)}")
    if math.isnan(max_accuracy_drop):
        raise ValueError("max_accuracy_drop must be a number of accuracy points, got NaN")
    objs = parse_objectives(objectives)
    constraint = f"accuracy drop ≤ {max_accuracy_drop:g} points versus the baseline"
    base_i = find_baseline(rows)
    if not rows:
        return Recommendation(
            priority=priority,
            max_accuracy_drop=max_accuracy_drop,
            constraint=constraint,
            score_formula="",
            chosen=None,
            message="The comparison table is empty: train a base model and run a job first.",
        )
    if base_i is None:
        raise ValueError("the comparison table has no baseline row (technique == 'baseline'); ratios need one")
    base = rows[base_i]
    base_acc = objective_value(base, "accuracy")
    if base_acc is not None:
        constraint += f" (accuracy ≥ {base_acc - max_accuracy_drop:.2f} %, baseline {base_acc:.2f} %)"
    if no_significant_drop:
        constraint += " and no significant drop (exact McNemar test against the baseline)"

    metrics = PRIORITY_METRICS[priority]
    if priority == "balanced":
        metrics = tuple(m for m in metrics if (objective_value(base, m) or 0) > 0)
        left_out = [METRIC_WORDS[m] for m in PRIORITY_METRICS["balanced"] if m not in metrics]
        factors = " · ".join(f"{m}/{m}_baseline" for m in metrics)
        score_formula = f"({factors}) ** (1/{len(metrics)}), lower is better" if metrics else ""
        if left_out:
            score_formula += f"; left out ({', '.join(left_out)} not measured on the baseline)"
    else:
        score_formula = f"{metrics[0]} ({METRIC_UNITS[metrics[0]]}), lower is better"
    score_formula += "; ties go to the smaller accuracy drop"

    excluded: list[Exclusion] = []
    ranked: list[tuple[float, float, int]] = []
    candidates: dict[int, Candidate] = {}
    for i, row in enumerate(rows):
        reasons: list[ExclusionReason] = []
        details: list[str] = []
        if not takes_part(row, include_trials):
            reasons.append("trial")
            details.append("search trial (include_trials is off)")
        drop = accuracy_drop(row, base, is_baseline=i == base_i)
        if drop is None:
            reasons.append("missing_metric")
            details.append("accuracy not measured")
        elif drop > max_accuracy_drop:
            reasons.append("over_budget")
            details.append(f"accuracy drop {drop:.2f} points > budget {max_accuracy_drop:g} points")
        if no_significant_drop and drop is not None and drop > 0 and row.get("drop_significant") is True:
            reasons.append("significant_drop")
            p = row.get("drop_p_value")
            details.append(f"significant drop (p = {p:.3g})" if isinstance(p, float) else "significant drop")
        missing = [m for m in metrics if objective_value(row, m) is None]
        if missing or not metrics:
            if "missing_metric" not in reasons:
                reasons.append("missing_metric")
            details.append(f"no {', '.join(missing)}" if missing else "the baseline has no metric to compare on")
        if reasons:
            excluded.append(Exclusion(row=_ref(rows, i), reasons=reasons, detail="; ".join(details)))
            continue
        assert drop is not None
        ratios = {m: _ratio(row, base, m) for m in PRIORITY_METRICS["balanced"]}
        if priority == "balanced":
            score = math.exp(sum(math.log(max(ratios[m] or 0.0, 1e-300)) for m in metrics) / len(metrics))
        else:
            score = objective_value(row, metrics[0]) or 0.0
        candidates[i] = Candidate(row=_ref(rows, i), score=score, accuracy_drop=drop, ratios=ratios)
        ranked.append((score, drop, i))

    if not ranked:
        reasons_all = ("over_budget", "significant_drop", "trial", "missing_metric")
        n_by_reason = {r: sum(r in e.reasons for e in excluded) for r in reasons_all}
        words = {
            "over_budget": "over budget",
            "significant_drop": "significantly worse",
            "trial": "search trial",
            "missing_metric": "missing a metric",
        }
        parts = [f"{n} {words[r]}{'s' if r == 'trial' and n > 1 else ''}" for r, n in n_by_reason.items() if n]
        only_budget = [e.row.index for e in excluded if e.reasons == ["over_budget"]]
        drops = [(accuracy_drop(rows[i], base, i == base_i) or 0.0, i) for i in only_budget]
        hint = ""
        if drops:
            d, i = min(drops)
            hint = (
                f" The smallest drop among rows excluded only by the budget is {d:.2f} points"
                f" ('{rows[i].get('label')}'): raise max_accuracy_drop to at least that."
            )
        elif n_by_reason["missing_metric"]:
            hint = f" Measure {', '.join(metrics) or ', '.join(PRIORITY_METRICS[priority])} or choose another priority."
        return Recommendation(
            priority=priority,
            max_accuracy_drop=max_accuracy_drop,
            constraint=constraint,
            score_formula=score_formula,
            chosen=None,
            excluded=excluded,
            message=(
                f"No row satisfies {constraint}: all {len(rows)} rows excluded ({', '.join(parts)};"
                f" a row can have several reasons).{hint}"
            ),
        )

    best_score = min(s for s, _, _ in ranked)

    def key(t: tuple[float, float, int]) -> tuple[float, float, int]:
        score, drop, i = t
        tied = math.isclose(score, best_score, rel_tol=TIE_RELATIVE_TOLERANCE)
        return (best_score if tied else score, drop, i)

    ranked.sort(key=key)
    ranking = [candidates[i] for _, _, i in ranked]
    ci = ranked[0][2]
    chosen = rows[ci]
    dominated = [
        _ref(rows, j)
        for j, other in enumerate(rows)
        if j != ci and takes_part(other, include_trials) and dominates(chosen, other, objs)
    ]
    runner_i = ranked[1][2] if len(ranked) > 1 else None
    to = trade_off(chosen, rows[runner_i]) if runner_i is not None else None

    c = candidates[ci]
    what = {
        "size": "the smallest",
        "ops": "the cheapest",
        "latency": "the fastest",
        "ort-latency": "the fastest in onnxruntime",
        "balanced": "the best balanced",
    }[priority]
    if ci == base_i:
        message = (
            f"Keep the baseline '{chosen.get('label')}': no compressed variant within the budget "
            f"({constraint}) beats it on {priority}"
        )
    else:
        shares = ", ".join(
            f"{100 * r:.1f} % of the baseline {METRIC_WORDS[m]}" for m, r in c.ratios.items() if r is not None
        )
        message = (
            f"Keep '{chosen.get('label')}' ({chosen.get('technique')}): {what} of {len(ranking)} candidates "
            f"within the budget, {shares}, {_cost_words(c.accuracy_drop)}"
        )
    message += f"; {len(excluded)} rows excluded." if excluded else "."
    if to is not None:
        message += f" Trade-off: {to.text}."
    return Recommendation(
        priority=priority,
        max_accuracy_drop=max_accuracy_drop,
        constraint=constraint,
        score_formula=score_formula,
        chosen=dict(chosen),
        chosen_ref=_ref(rows, ci),
        chosen_is_baseline=ci == base_i,
        ranking=ranking,
        excluded=excluded,
        dominates=dominated,
        runner_up=_ref(rows, runner_i) if runner_i is not None else None,
        trade_off=to,
        message=message,
    )
