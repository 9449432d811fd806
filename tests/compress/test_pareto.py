"""Pareto flags on a hand-made table; every dominance relation is written out next to its row."""

from __future__ import annotations

from typing import Any

import pytest

from compress.pareto import (
    DEFAULT_OBJECTIVES,
    Objective,
    annotate_pareto,
    dominates,
    pareto_flags,
    parse_objectives,
)


def row(label: str, acc: float | None, size: int | None, ops: int | None, lat: float | None, **kw: Any) -> dict:
    tech = kw.pop("technique", "baseline" if label == "baseline" else label.split("-")[0])
    return {"label": label, "technique": tech, "accuracy": acc, "bytes": size, "ops": ops, "latency_ms_bs64": lat} | kw


# Objectives: accuracy up, bytes down, ops down, latency_ms_bs64 down.
TABLE = [
    # 0: most accurate row -> nobody beats it on accuracy, so it is on the front.
    row("baseline", 98.0, 100_000, 1_000_000, 10.0),
    # 1: smallest non-trial row (25 kB) with the lowest latency among full-ops rows -> front.
    row("int8", 97.8, 25_000, 1_000_000, 8.0),
    # 2: fewest ops (500k) of the non-trial rows -> front.
    row("prune-a", 97.0, 60_000, 500_000, 6.0),
    # 3: dominated by 2 (prune-a): 97.0 > 96.5, 60k < 70k, 500k < 600k, 6 < 7.
    row("prune-b", 96.5, 70_000, 600_000, 7.0),
    # 4: dominated by 1 (int8): equal accuracy and ops, but 25k < 30k bytes and 8 < 9 ms.
    row("lowrank", 97.8, 30_000, 1_000_000, 9.0),
    # 5: identical to 1 (int8): neither is strictly better, so both stay on the front.
    row("int8-rerun", 97.8, 25_000, 1_000_000, 8.0, technique="int8"),
    # 6: no latency -> compared on accuracy/bytes/ops only. Baseline is more accurate but bigger (100k > 90k),
    #    int8 is smaller but less accurate (97.8 < 97.9): nobody dominates it -> front.
    row("distill-nolat", 97.9, 90_000, 1_100_000, None),
    # 7: no latency -> compared on the other three. Not dominated by 0 (baseline is bigger: 100k > 95k),
    #    but dominated by 1 (int8): 97.8 > 95.0, 25k < 95k, 1.0M < 1.2M.
    row("distill-bad", 95.0, 95_000, 1_200_000, None),
    # 8: search trial that beats every row on every objective: ignored (None) unless include_trials.
    row("prune-trial", 99.0, 10_000, 100_000, 1.0, trial=True),
    # 9: nothing measured: cannot be judged -> None.
    row("broken", None, None, None, None),
]


def test_front_on_hand_made_table() -> None:
    assert pareto_flags(TABLE) == [True, True, True, False, False, True, True, False, None, None]


def test_dominance_pairs_written_out() -> None:
    assert dominates(TABLE[2], TABLE[3])  # prune-a beats prune-b on all four
    assert dominates(TABLE[1], TABLE[4])  # int8 beats lowrank: ties on accuracy/ops, better bytes/latency
    assert not dominates(TABLE[1], TABLE[5]) and not dominates(TABLE[5], TABLE[1])  # exact tie
    assert dominates(TABLE[1], TABLE[7])  # latency missing on 7: skipped, the other three decide
    assert not dominates(TABLE[0], TABLE[7])  # baseline is bigger (100k > 95k)
    assert not dominates(TABLE[0], TABLE[9]) and not dominates(TABLE[9], TABLE[0])  # nothing in common


def test_trials_take_part_only_when_asked() -> None:
    flags = pareto_flags(TABLE, include_trials=True)
    # The trial dominates every judged row (row 6 and 7 on their three measured objectives).
    assert flags == [False, False, False, False, False, False, False, False, True, None]


def test_chosen_objectives_change_the_front() -> None:
    # Accuracy and bytes only: prune-a (97.0, 60k) is now dominated by int8 (97.8, 25k);
    # distill-nolat (97.9, 90k) sits between int8 and baseline -> front.
    flags = pareto_flags(TABLE, objectives="accuracy,bytes")
    assert flags == [True, True, False, False, False, True, True, False, None, None]


def test_annotate_pareto_adds_bool_flags() -> None:
    out = annotate_pareto(TABLE)
    assert [r["pareto"] for r in out] == [True, True, True, False, False, True, True, False, False, False]
    assert "pareto" not in TABLE[0]  # input rows untouched
    assert out[3]["label"] == "prune-b"


def test_parse_objectives() -> None:
    assert parse_objectives("accuracy, bytes,ops") == (
        Objective("accuracy", "max"),
        Objective("bytes", "min"),
        Objective("ops", "min"),
    )
    assert [str(o) for o in parse_objectives(DEFAULT_OBJECTIVES)] == list(DEFAULT_OBJECTIVES)
    assert parse_objectives("size,latency,size") == (Objective("bytes", "min"), Objective("latency_ms_bs64", "min"))
    assert parse_objectives(["accuracy:max", "macs"]) == (Objective("accuracy", "max"), Objective("macs", "min"))


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("accuracy,speed", "unknown objective 'speed'"),
        ("bytes:max", "'bytes' is always 'min'"),
        ("", "no objectives"),
        (" , ", "no objectives"),
    ],
)
def test_parse_objectives_errors(spec: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle) as exc:
        parse_objectives(spec)
    if "unknown" in needle:
        assert "accuracy, accuracy_drop, n_params, bytes" in str(exc.value)  # lists the valid names


def test_nan_counts_as_missing() -> None:
    a = row("a", 97.0, 10, 10, float("nan"))
    b = row("b", 96.0, 20, 20, 1.0)
    assert dominates(a, b)  # latency skipped, a wins the rest
    assert pareto_flags([a, b]) == [True, False]


def test_numpy_scalars_and_non_numbers() -> None:
    import numpy as np

    a = row("a", np.float64(97.0), np.int64(10), 10, None)  # type: ignore[arg-type]
    b = row("b", 96.0, 20, 20, None) | {"ops": "20"}  # a string is not a measurement: ops skipped
    assert dominates(a, b)  # accuracy and bytes decide
    assert pareto_flags([a, b]) == [True, False]
