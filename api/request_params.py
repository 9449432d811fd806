"""Header and query parameters routes share (the HTTP side of the services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query

from api.decision_service import DEFAULT_OBJECTIVES_TEXT
from compress.pareto import OBJECTIVE_ALIASES, OBJECTIVE_DIRECTIONS

ObjectivesQuery = Query(
    default=DEFAULT_OBJECTIVES_TEXT,
    max_length=500,
    description=(
        "Comma-separated columns the Pareto front is computed on; accuracy is maximised, every other one "
        f"minimised. Valid: {', '.join(OBJECTIVE_DIRECTIONS)}; aliases: "
        + ", ".join(f"{a} (= {n})" for a, n in OBJECTIVE_ALIASES.items())
        + "."
    ),
)
BudgetQuery = Query(
    default=1.0,
    ge=-100.0,
    le=100.0,
    description="Largest accepted accuracy drop versus the baseline, in points of top-1 (negative: must beat it).",
)
PriorityQuery = Query(
    default="size",
    description="size: fewest bytes; ops: fewest operations; latency: fastest at batch 64; balanced: geometric "
    "mean of the three ratios to the baseline.",
)


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="Any unique string (e.g. a UUID): sending the same request again with the same key returns "
        "what the first one created instead of creating it twice.",
    ),
]
