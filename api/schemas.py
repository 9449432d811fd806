"""Request and response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, create_model, field_serializer, model_validator

from compress.result_columns import STORED_COLUMNS, ResultColumn
from compress.runner import Step
from compress.training import TrainConfig
from store.json_safe import find_problem, shown
from store.tables import JOB_STATUSES

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
assert set(JobStatus.__args__) == set(JOB_STATUSES)  # type: ignore[attr-defined]


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class _Times(BaseModel):
    @field_serializer("*", when_used="json")
    def _utc(self, value: Any) -> Any:
        return as_utc(value).isoformat() if isinstance(value, datetime) else value


class RequestBody(BaseModel):
    """A request body: every string valid Unicode without NUL, every number finite and in range, anywhere in it
    (free JSON such as a technique's ``params`` or a layer spec's ``args`` included), before anything is stored."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _json_safe(cls, data: Any) -> Any:
        found = find_problem(data)
        if found:
            where, what = found
            raise ValueError(f"'{shown(where)}' {what}, which is never accepted")
        return data


ModelId = Annotated[str, Path(min_length=1, max_length=64, description="GET /models lists them.")]

NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""A name shown in tables and plots: any characters but control characters (no newlines, tabs, NULs)."""

Dim = Annotated[int, Field(ge=1, le=4096)]
"""One input dimension (C, H or W)."""


class JobCreate(RequestBody):
    """One technique (``technique`` + ``params``) or a chain (``steps``) applied to a base model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.5}},
                {
                    "base_model_id": "digits-cnn",
                    "steps": [
                        {"technique": "prune-l1", "params": {"amount": 0.5}},
                        {"technique": "quantize-dynamic", "params": {}},
                    ],
                },
            ]
        },
    )

    base_model_id: str = Field(min_length=1, max_length=64, description="GET /models lists them.")
    technique: str | None = Field(default=None, max_length=100, description="GET /techniques lists them.")
    params: dict[str, Any] | None = Field(default=None, description="The technique's params (its JSON schema).")
    steps: list[Step] | None = Field(default=None, min_length=1, max_length=10, description="A chain, in order.")
    rerun: bool = Field(
        default=False,
        description="Run it even if the same recipe (steps, params with their defaults, seed) already succeeded on "
        "this base model. Without it, such a job is answered from the table at once: created 'succeeded', its "
        "notes.answered_by_job naming the job whose rows it shows (one row per recipe). Queued or running "
        "twins do not answer: a new job is queued.",
    )

    @model_validator(mode="after")
    def _one_form(self) -> JobCreate:
        if (self.technique is None) == (self.steps is None):
            raise ValueError("give either 'technique' (with optional 'params') or 'steps', not both or neither")
        if self.steps is not None and self.params is not None:
            raise ValueError("'params' goes with 'technique'; in a chain every step has its own 'params'")
        return self

    def as_steps(self) -> list[Step]:
        if self.steps is not None:
            return self.steps
        return [Step(technique=self.technique or "", params=self.params or {})]


def _row_field(c: ResultColumn) -> tuple[Any, Any]:
    description = " ".join(x for x in (c.description, f"({c.unit})" if c.unit else "") if x) or None
    return (c.type | None if c.nullable else c.type), Field(description=description)


RowOut: type[_Times] = create_model(
    "RowOut",
    __base__=_Times,
    row_index=(int, ...),
    **{c.name: _row_field(c) for c in STORED_COLUMNS},
    has_artifact=(bool, ...),
    created_at=(datetime | None, ...),
)
"""One result row as GET /jobs/{id} serves it: its declared columns (``compress.result_columns``)."""


class JobOut(_Times):
    id: int
    kind: str
    base_model_id: str
    technique: str
    steps: list[dict[str, Any]] | None
    status: JobStatus
    progress: float = Field(description="0-1.")
    stage: str | None
    error: str | None
    cancel_requested: bool
    attempts: int
    max_attempts: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    notes: dict[str, Any] | None = Field(
        default=None,
        description="What the job found out beyond its rows, e.g. eval_split: whether the evaluation split can "
        "resolve the accuracy budget (the 95 % interval's half-width, and the samples a budget would need).",
    )
    rows: list[RowOut] | None = Field(default=None, description="Result rows (GET /jobs/{id} only).")


class JobPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[JobOut]


class ModelCreate(RequestBody):
    """A base model: a built-in architecture name or a JSON layer list, a data set spec, how to train."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "my digits cnn", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": 5}}
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    architecture: str | list[dict[str, Any]] = Field(description="GET /architectures, or a layer spec list.")
    input_shape: tuple[Dim, Dim, Dim] | None = Field(default=None, description="C, H, W (default: the architecture's).")
    num_classes: int | None = Field(default=None, ge=2, le=100_000)
    dataset: str = Field(default="digits", min_length=1, max_length=1000, description="GET /datasets lists them.")
    training: TrainConfig = Field(default_factory=TrainConfig)


class ModelUpload(RequestBody):
    """The ``spec`` field of ``POST /models/upload``: what the uploaded weights belong to."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "my linear digits",
                    "architecture": [
                        {"name": "flatten", "type": "Flatten"},
                        {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
                    ],
                    "input_shape": [1, 8, 8],
                    "dataset": "digits",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN)
    architecture: str | list[dict[str, Any]] = Field(description="GET /architectures, or a layer spec list.")
    input_shape: tuple[Dim, Dim, Dim] | None = Field(default=None, description="C, H, W (default: the architecture's).")
    num_classes: int | None = Field(default=None, ge=2, le=100_000)
    dataset: str = Field(
        default="digits", min_length=1, max_length=1000, description="Evaluated on (GET /datasets lists them)."
    )


class ModelOut(_Times):
    id: str
    name: str
    architecture: Any
    input_shape: list[int] | None
    num_classes: int | None
    dataset: str
    training: dict[str, Any]
    status: str
    error: str | None
    preset: bool
    training_job_id: int | None
    created_at: datetime | None
    baseline: RowOut | None = None
    layers: list[dict[str, Any]] | None = Field(default=None, description="Per-layer table of the trained model.")


class ModelCreated(BaseModel):
    id: str
    training_job_id: int
    status: str
