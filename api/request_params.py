"""Header and query parameters routes share (the HTTP side of the services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Query

from api.decision_service import DEFAULT_OBJECTIVES_TEXT
from compress.pareto import OBJECTIVE_ALIASES, OBJECTIVE_DIRECTIONS


def _objective_item() -> str:
    """One objective as a regular expression: a known column or alias, with its own direction if any."""
    names = [f"{n}(:{d})?" for n, d in OBJECTIVE_DIRECTIONS.items()]
    names += [f"{a}(:{OBJECTIVE_DIRECTIONS[n]})?" for a, n in OBJECTIVE_ALIASES.items()]
    return "(" + "|".join(sorted(names, key=len, reverse=True)) + ")"


OBJECTIVES_PATTERN = f"^ *{_objective_item()} *(, *{_objective_item()} *)*$"
"""What ``objectives`` accepts, stated in the OpenAPI schema (the route checks it itself, so that a 422 can list
the valid names): comma-separated known columns, each optionally with its only sensible direction."""

ObjectivesQuery = Query(
    default=DEFAULT_OBJECTIVES_TEXT,
    max_length=500,
    json_schema_extra={"pattern": OBJECTIVES_PATTERN},
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
    description="size: fewest bytes; ops: fewest operations; latency: fastest at batch 64 (PyTorch eager); "
    "ort-latency: fastest at batch 64 in onnxruntime; balanced: geometric mean of the size, ops and eager "
    "latency ratios to the baseline.",
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
