"""The vectorised front agrees with the pairwise definition (``dominates``) on random tables."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from compress import pareto
from compress.pareto import dominates, pareto_flags, parse_objectives, takes_part


def reference_flags(rows: list[dict[str, Any]], objectives: str, include_trials: bool) -> list[bool | None]:
    objs = parse_objectives(objectives)
    judged = [
        takes_part(r, include_trials) and any(pareto.objective_value(r, o.name) is not None for o in objs) for r in rows
    ]
    out: list[bool | None] = []
    for i, row in enumerate(rows):
        if not judged[i]:
            out.append(None)
            continue
        out.append(not any(judged[j] and j != i and dominates(o, row, objs) for j, o in enumerate(rows)))
    return out


def random_value(rng: random.Random) -> Any:
    return rng.choice([None, math.nan, True, "x", rng.randint(0, 3), rng.randint(0, 3) / 2, rng.randint(0, 3)])


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("objectives", ["accuracy,bytes,ops,latency", "accuracy,bytes", "macs"])
def test_vectorised_front_matches_pairwise(seed: int, objectives: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    if seed % 3 == 0:
        monkeypatch.setattr(pareto, "_PAIRS_PER_CHUNK", 7)  # several chunks
    names = ("accuracy", "bytes", "ops", "latency_ms_bs64", "macs")
    rows = [{**{n: random_value(rng) for n in names}, "trial": rng.random() < 0.3} for _ in range(rng.randint(0, 40))]
    for include_trials in (False, True):
        assert pareto_flags(rows, objectives, include_trials) == reference_flags(rows, objectives, include_trials)


def test_empty_table() -> None:
    assert pareto_flags([]) == []
