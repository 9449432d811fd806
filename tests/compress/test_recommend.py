"""recommend() on a hand-made table where each priority picks a different row."""

from __future__ import annotations

import math
from typing import Any

import pytest

from compress.recommend import recommend, trade_off


def row(label: str, tech: str, acc: float | None, size: int, ops: int, lat: float | None, **kw: Any) -> dict:
    return {
        "label": label,
        "technique": tech,
        "accuracy": acc,
        "accuracy_drop": None if acc is None else round(98.0 - acc, 6),
        "bytes": size,
        "ops": ops,
        "latency_ms_bs64": lat,
        "trial": False,
        "job_id": kw.pop("job_id", label),
    } | kw


# Baseline 98.0 %, 400 kB, 4 M ops, 20 ms. Ratios to baseline in the comments: (size, ops, latency).
# balanced = geometric mean of the three ratios.
TABLE = [
    row("baseline", "baseline", 98.0, 400_000, 4_000_000, 20.0),  # (1, 1, 1)          balanced 1.0
    row("int8", "quantize", 97.6, 100_000, 4_000_000, 16.0),  # (.25, 1, .8)           balanced .585 <- size
    row("prune-channels", "prune", 97.2, 200_000, 1_000_000, 12.0),  # (.5, .25, .6)   balanced .422 <- ops
    row("fused", "fuse", 97.5, 300_000, 2_000_000, 5.0),  # (.75, .5, .25)             balanced .454 <- latency
    row("lowrank", "lowrank", 97.4, 120_000, 1_200_000, 8.0),  # (.3, .3, .4)          balanced .330 <- balanced
    row("prune-heavy", "prune", 95.0, 50_000, 500_000, 3.0),  # best everywhere but drop 3.0 > budget 1.0
    row("prune-trial", "prune", 97.9, 40_000, 400_000, 2.0, trial=True),  # search trial: excluded
    row("distill-nolat", "distill", 97.7, 390_000, 3_900_000, None),  # no latency: out of latency/balanced
    # drop exactly 1.0 (within budget, <=); dominated by lowrank and by prune-channels on all four objectives.
    row("prune-light", "prune", 97.0, 250_000, 1_500_000, 13.0),
]


@pytest.mark.parametrize(
    ("priority", "label", "runner_up"),
    [
        ("size", "int8", "lowrank"),  # 100 kB < 120 kB (prune-heavy 50 kB and the trial 40 kB are excluded)
        ("ops", "prune-channels", "lowrank"),  # 1.0 M < 1.2 M
        ("latency", "fused", "lowrank"),  # 5 ms < 8 ms
        ("balanced", "lowrank", "prune-channels"),  # .330 < .422
    ],
)
def test_each_priority_picks_its_row(priority: str, label: str, runner_up: str) -> None:
    rec = recommend(TABLE, max_accuracy_drop=1.0, priority=priority)  # type: ignore[arg-type]
    assert rec.chosen is not None and rec.chosen["label"] == label
    assert rec.chosen_ref is not None and rec.chosen_ref.index == [r["label"] for r in TABLE].index(label)
    assert rec.runner_up is not None and rec.runner_up.label == runner_up
    assert rec.ranking[0].row.label == label and rec.ranking[1].row.label == runner_up
    assert not rec.chosen_is_baseline
    assert "accuracy drop ≤ 1 points" in rec.constraint and "accuracy ≥ 97.00 %" in rec.constraint
    assert f"Keep '{label}'" in rec.message


def test_exclusions_and_their_reasons() -> None:
    rec = recommend(TABLE, priority="latency")
    why = {e.row.label: e.reasons for e in rec.excluded}
    assert why == {
        "prune-heavy": ["over_budget"],
        "prune-trial": ["trial"],
        "distill-nolat": ["missing_metric"],
    }
    detail = {e.row.label: e.detail for e in rec.excluded}
    assert detail["prune-heavy"] == "accuracy drop 3.00 points > budget 1 points"
    assert detail["distill-nolat"] == "no latency_ms_bs64"
    # Under size, the row without latency is a candidate (ranked by bytes: last but baseline).
    size = recommend(TABLE, priority="size")
    assert [c.row.label for c in size.ranking] == [
        "int8",
        "lowrank",
        "prune-channels",
        "prune-light",
        "fused",
        "distill-nolat",
        "baseline",
    ]


def test_include_trials_lets_the_trial_win() -> None:
    rec = recommend(TABLE, priority="size", include_trials=True)
    assert rec.chosen is not None and rec.chosen["label"] == "prune-trial"
    assert [e.row.label for e in rec.excluded] == ["prune-heavy"]


def test_balanced_scores_and_formula() -> None:
    rec = recommend(TABLE, priority="balanced")
    scores = {c.row.label: c.score for c in rec.ranking}
    assert scores["lowrank"] == pytest.approx((0.3 * 0.3 * 0.4) ** (1 / 3))
    assert scores["prune-channels"] == pytest.approx((0.5 * 0.25 * 0.6) ** (1 / 3))
    assert scores["baseline"] == pytest.approx(1.0)
    assert rec.ranking[0].ratios == pytest.approx({"bytes": 0.3, "ops": 0.3, "latency_ms_bs64": 0.4})
    assert "bytes/bytes_baseline · ops/ops_baseline · latency_ms_bs64/latency_ms_bs64_baseline" in rec.score_formula
    assert "(1/3)" in rec.score_formula


def test_balanced_without_latency_leaves_it_out() -> None:
    table = [r | {"latency_ms_bs64": None} for r in TABLE]
    rec = recommend(table, priority="balanced")
    assert "(1/2)" in rec.score_formula and "left out (latency" in rec.score_formula
    # sqrt(size * ops): lowrank sqrt(.09)=.3, prune-channels sqrt(.125)=.354 -> lowrank still first.
    assert rec.chosen is not None and rec.chosen["label"] == "lowrank"
    assert rec.ranking[0].score == pytest.approx(0.3)


def test_dominated_rows_reported() -> None:
    rec = recommend(TABLE, priority="balanced")
    # lowrank (97.4, 120k, 1.2M, 8ms) beats prune-light (97.0, 250k, 1.5M, 13ms) on all four;
    # it does not dominate the baseline (less accurate) nor prune-heavy (bigger), and the trial is left out.
    assert [r.label for r in rec.dominates] == ["prune-light"]
    ops = recommend(TABLE, priority="ops")
    assert [r.label for r in ops.dominates] == ["prune-light"]  # prune-channels: 97.2>97.0, 200k<250k, 1M<1.5M, 12<13


def test_runner_up_trade_off_in_words_and_numbers() -> None:
    rec = recommend(TABLE, priority="balanced")
    to = rec.trade_off
    assert to is not None
    # lowrank vs prune-channels: 120k/200k = -40 %, 1.2M/1M = +20 %, 8/12 = -33.3 %, error 97.2-97.4 = -0.2 points
    assert to.size_pct == pytest.approx(-40.0)
    assert to.ops_pct == pytest.approx(20.0)
    assert to.latency_pct == pytest.approx(-100 / 3)
    assert to.error_points == pytest.approx(-0.2)
    assert to.text == (
        "−40.0 % size, −33.3 % latency, −0.20 points error for +20.0 % ops (versus runner-up 'prune-channels')"
    )
    assert to.text in rec.message


def test_trade_off_like_the_issue_example() -> None:
    chosen = {"label": "a", "accuracy": 97.0, "bytes": 97_000, "ops": 1000, "latency_ms_bs64": None}
    other = {"label": "b", "accuracy": 97.4, "bytes": 100_000, "ops": 1000, "latency_ms_bs64": 3.0}
    to = trade_off(chosen, other)
    assert to.text == "−3.0 % size for +0.40 points error (versus runner-up 'b')"
    assert to.ops_pct == 0.0 and to.latency_pct is None


def test_baseline_kept_when_nothing_beats_it_within_budget() -> None:
    rec = recommend(TABLE, max_accuracy_drop=0.2, priority="size")
    # Only distill-nolat (drop 0.3) comes close; every variant is over 0.2 points, the trial is excluded.
    assert rec.chosen is not None and rec.chosen["label"] == "baseline"
    assert rec.chosen_is_baseline
    assert rec.runner_up is None and rec.trade_off is None
    assert rec.message.startswith("Keep the baseline 'baseline': no compressed variant within the budget")
    assert len(rec.excluded) == 8


def test_budget_that_excludes_everything_is_an_answer_not_an_error() -> None:
    rec = recommend(TABLE, max_accuracy_drop=-0.5, priority="balanced")
    assert rec.chosen is None and rec.chosen_ref is None and rec.ranking == []
    assert len(rec.excluded) == len(TABLE)
    assert rec.message.startswith("No row satisfies accuracy drop ≤ -0.5 points versus the baseline")
    # The trial (drop 0.1) is over this budget too, so it counts twice.
    assert "all 9 rows excluded (9 over budget, 1 search trial, 1 missing a metric;" in rec.message
    # The baseline (drop 0) is the closest row excluded only by the budget.
    assert "smallest drop among rows excluded only by the budget is 0.00 points ('baseline')" in rec.message


def test_missing_metric_everywhere_is_an_answer() -> None:
    table = [r | {"latency_ms_bs64": None} for r in TABLE]
    rec = recommend(table, priority="latency")
    assert rec.chosen is None
    assert "Measure latency_ms_bs64 or choose another priority" in rec.message


def test_accuracy_drop_derived_from_accuracy_when_missing() -> None:
    table = [r | {"accuracy_drop": None} for r in TABLE]
    rec = recommend(table, priority="size")
    assert rec.chosen is not None and rec.chosen["label"] == "int8"
    assert math.isclose(rec.ranking[0].accuracy_drop, 0.4, abs_tol=1e-9)


def test_invalid_inputs() -> None:
    valid = "size, ops, latency, ort-latency, balanced"
    with pytest.raises(ValueError, match=f"unknown priority 'speed'; valid priorities: {valid}"):
        recommend(TABLE, priority="speed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no baseline row"):
        recommend(TABLE[1:])
    with pytest.raises(ValueError, match="NaN"):
        recommend(TABLE, max_accuracy_drop=float("nan"))
    empty = recommend([])
    assert empty.chosen is None and "empty" in empty.message
