"""The lab's write-up from a comparison table: the rows grouped as the course groups them, and a conclusion
written from the data — which row to keep for size, operations, latency and balance, which differences are
within noise, what each technique cost in accuracy, and whether the evaluation split can resolve the budget.

Pure: it reads served comparison rows (``/comparison``'s dicts) and recommendations, and returns text.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from compress.recommend import Recommendation, find_baseline
from compress.result_columns import columns, format_value
from compress.stats import split_adequacy
from compress.sweep import lab_groups

PRIORITY_WORDS = {
    "size": ("size", "bytes", "of the base network's size"),
    "ops": ("operations", "ops", "of its operations per sample"),
    "latency": ("latency", "latency_ms_bs64", "of its time per batch of 64"),
    "balanced": ("a balance of the three", None, ""),
}
_DROP, _P, _SIZE, _OPS, _SPEEDUP = columns(["accuracy_drop", "drop_p_value", "size_ratio", "ops_ratio", "speedup_bs64"])
GROUP_COLUMNS = (
    "row",
    "accuracy % [95 % CI]",
    _DROP.heading,
    _P.heading,
    "verdict",
    _SIZE.heading,
    _OPS.heading,
    _SPEEDUP.heading,
)
"""A lab group's table: the declared columns (``compress.result_columns``) with their headings and formats, the
accuracy with its interval in one cell, and the verdict of the paired test."""


class Writeup(BaseModel):
    groups: list[tuple[str, list[list[str]]]] = Field(description="(the lab's group, its rows as text cells).")
    conclusion: list[str]


def group_of(technique: str) -> str:
    if "→" in technique:
        return "Chains of techniques"
    return lab_groups().get(technique, "Other techniques")


def verdict(row: Mapping[str, Any]) -> str:
    """Whether the row's accuracy differs from the base network's beyond chance (exact McNemar test)."""
    if row.get("technique") == "baseline":
        return "reference"
    if row.get("drop_significant") is None:
        return "not tested"
    if not row["drop_significant"]:
        return "within noise"
    return "significantly worse" if (row.get("accuracy_drop") or 0) > 0 else "significantly better"


def _share(value: Any, base: Any) -> float | None:
    return None if not value or not base else value / base


def _cells(row: Mapping[str, Any], base: Mapping[str, Any]) -> list[str]:
    acc, low, high = row.get("accuracy"), row.get("accuracy_ci_low"), row.get("accuracy_ci_high")
    shown = "—" if acc is None else f"{acc:.2f}" + ("" if low is None else f" [{low:.1f}, {high:.1f}]")
    return [
        str(row.get("label", "")),
        shown,
        format_value(row.get(_DROP.name), _DROP.kind),
        format_value(row.get(_P.name), _P.kind),
        verdict(row),
        format_value(_share(row.get("bytes"), base.get("bytes")), _SIZE.kind),
        format_value(_share(row.get("ops"), base.get("ops")), _OPS.kind),
        format_value(row.get(_SPEEDUP.name), _SPEEDUP.kind),
    ]


def lab_writeup(
    rows: Sequence[Mapping[str, Any]],
    recommendations: Mapping[str, Recommendation],
    max_accuracy_drop: float,
) -> Writeup:
    """Group the rows (search trials left out) and write the conclusion."""
    bi = find_baseline(rows)
    kept = [r for r in rows if not r.get("trial")]
    if bi is None:
        return Writeup(groups=[], conclusion=["The table has no base network row yet: train the base model first."])
    base = rows[bi]
    order = list(dict.fromkeys([*lab_groups().values(), "Chains of techniques", "Other techniques"]))
    grouped: dict[str, list[list[str]]] = {}
    for r in kept:
        grouped.setdefault(group_of(str(r.get("technique", ""))), []).append(_cells(r, base))
    groups = [(g, grouped[g]) for g in order if g in grouped]
    conclusion = [
        *_keep_sentences(recommendations, base),
        *_noise_sentences(kept),
        *_cost_sentences(kept, base),
        *_seed_sentences(kept),
        *_caveats(kept, base, max_accuracy_drop),
    ]
    return Writeup(groups=groups, conclusion=conclusion)


def _keep_sentences(recommendations: Mapping[str, Recommendation], base: Mapping[str, Any]) -> list[str]:
    out = []
    for priority, (words, metric, of_what) in PRIORITY_WORDS.items():
        rec = recommendations.get(priority)
        if rec is None:
            continue
        if rec.chosen is None:
            out.append(f"For {words}, no row stays within the budget ({rec.constraint}).")
            continue
        row = rec.chosen
        gain = ""
        share = _share_of_base(row, base, metric)
        if share is not None:
            gain = f": {100 * share:.1f} % {of_what}"
        drop = row.get("accuracy_drop") or 0.0
        out.append(
            f"For {words}, keep **{row.get('label')}**{gain}, at {row.get('accuracy', 0):.2f} % accuracy "
            f"({drop:+.2f} points versus the base network, {verdict(row)})."
        )
    return out


def _share_of_base(row: Mapping[str, Any], base: Mapping[str, Any], metric: str | None) -> float | None:
    """The row's ``metric`` as a share of the base network's; for latency, 1 / the served speedup (the
    figure the table's speedup divides), none when that speedup is empty (not comparable)."""
    if metric == "latency_ms_bs64":
        speedup = row.get("speedup_bs64")
        return 1.0 / speedup if speedup else None
    return _share(row.get(metric), base.get(metric)) if metric else None


def _names(rows: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(str(r.get("label")) for r in rows)


def _noise_sentences(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    noise = [r for r in rows if verdict(r) == "within noise"]
    worse = [r for r in rows if verdict(r) == "significantly worse"]
    out = []
    if noise:
        out.append(
            f"Within noise — no significant difference from the base network on the same evaluation samples "
            f"(exact paired McNemar test): {_names(noise)}. Their accuracy differences should not decide between them."
        )
    if worse:
        shown = ", ".join(f"{r.get('label')} ({(r.get('accuracy_drop') or 0):+.2f} points)" for r in worse)
        out.append(f"Significantly less accurate than the base network: {shown}.")
    return out


def _cost_sentences(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any]) -> list[str]:
    by_group: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("technique") != "baseline" and r.get("accuracy_drop") is not None:
            by_group.setdefault(group_of(str(r.get("technique", ""))), []).append(r)
    parts = []
    for group, members in by_group.items():
        drops = [float(r["accuracy_drop"]) for r in members]
        sizes = [r["bytes"] / base["bytes"] for r in members if r.get("bytes") and base.get("bytes")]
        cost = f"{min(drops):+.2f}" if len(drops) == 1 else f"{min(drops):+.2f} to {max(drops):+.2f}"
        size = "" if not sizes else f", down to {100 * min(sizes):.1f} % of the size"
        parts.append(f"{group.lower()} {cost} points{size}")
    return (
        [f"What each technique cost in accuracy (points below the base network): {'; '.join(parts)}."] if parts else []
    )


def _seed_sentences(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A recipe run from several starting points (re-init over seeds): its accuracy as mean ± std."""
    by_job: dict[Any, list[Mapping[str, Any]]] = {}
    for r in rows:
        if r.get("technique") != "baseline" and r.get("accuracy") is not None:
            by_job.setdefault(r.get("job_id"), []).append(r)
    out = []
    for members in by_job.values():
        if len(members) < 2:
            continue
        accs = [float(r["accuracy"]) for r in members]
        recipe = str(members[0].get("label", "")).split(" (seed=")[0]
        out.append(
            f"{recipe}: {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} % over {len(accs)} starting "
            "points (mean ± standard deviation)."
        )
    return out


def _caveats(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any], budget: float) -> list[str]:
    out = []
    n = base.get("eval_samples")
    if n:
        adequacy = split_adequacy(int(n), budget, base.get("accuracy"))
        if adequacy.too_small:
            out.append(f"Caution: {adequacy.message}")
    flagged = [r for r in rows if r.get("latency_note") and r.get("speedup_bs64") is None]
    if flagged:
        out.append(
            f"Latency: {len(flagged)} row(s) were timed under other conditions than the base network "
            f"({_names(flagged)}); their speed-ups are left out until a retime (POST /models/{{id}}/retime)."
        )
    return out
