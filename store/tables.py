"""SQLModel tables: base models, jobs and result rows. The schema changes only through migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import create_model
from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

import store.db  # noqa: F401  (sets the naming convention before any table is declared)
from compress.result_columns import MEASURED_COLUMNS, STORED_COLUMNS, ResultColumn

if TYPE_CHECKING:
    from compress.measure import Measurement

JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
JOB_STATUSES = (JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED)
TERMINAL_STATUSES = frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED})
ACTIVE_STATUSES = frozenset({JOB_QUEUED, JOB_RUNNING})
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    # a worker's claim (conditional update), or a cancel before it started
    JOB_QUEUED: frozenset({JOB_RUNNING, JOB_CANCELLED}),
    # its worker's final write; or the reaper: back to queued (worker lost), failed (lost max_attempts times)
    JOB_RUNNING: frozenset({JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED, JOB_QUEUED}),
    **{s: frozenset() for s in TERMINAL_STATUSES},
}
"""The job life cycle: ``store.jobs.change_status``, the only writer of a job's status, refuses any other change."""
JOB_KINDS = ("train", "compress", "retime")

MODEL_UNTRAINED, MODEL_TRAINING, MODEL_READY, MODEL_FAILED = "untrained", "training", "ready", "failed"

BASELINE_TECHNIQUE = "baseline"
PRESET_MODEL_ID = "digits-cnn"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=nullable))


class BaseModelRow(SQLModel, table=True):
    """A trained (or to-be-trained) base network: the reference every variant is compared with.

    Its measurement (per-layer table included) is stored once, as its baseline result row
    (``store.results.baseline_row``).
    """

    __tablename__ = "base_models"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    architecture: Any = Field(sa_column=Column(JSON, nullable=False))  # built-in name or layer list
    spec: Any = Field(default=None, sa_column=Column(JSON, nullable=True))  # resolved ModelSpec
    input_shape: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    num_classes: int | None = None
    dataset: str = Field(max_length=1000)
    training: Any = Field(sa_column=Column(JSON, nullable=False))  # TrainConfig
    status: str = Field(default=MODEL_UNTRAINED, max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    artifact_path: str | None = Field(default=None, max_length=500)
    training_job_id: int | None = None
    preset: bool = False
    created_at: datetime | None = _ts(nullable=False)
    updated_at: datetime | None = _ts()


class Job(SQLModel, table=True):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_base_model_id", "base_model_id"),
        Index("ix_jobs_technique", "technique"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    base_model_id: str = Field(foreign_key="base_models.id", max_length=64)
    technique: str = Field(max_length=500)  # "train", a technique name, or a chain "a → b"
    steps: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    status: str = Field(default=JOB_QUEUED, max_length=16)
    progress: float = 0.0
    stage: str | None = Field(default=None, max_length=500)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    cancel_requested: bool = False
    attempts: int = 0
    max_attempts: int = 3
    lease_token: str | None = Field(default=None, max_length=64)
    heartbeat_at: datetime | None = _ts()
    created_at: datetime | None = _ts(nullable=False)
    enqueued_at: datetime | None = _ts()  # its id last sent to the queue by the reaper/reconciler (NULL: at creation)
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    updated_at: datetime | None = _ts()
    notes: Any = Field(default=None, sa_column=Column(JSON, nullable=True))  # what the job found out (JSON object)


def _declared_field(c: ResultColumn) -> tuple[Any, Any]:
    """The SQLModel annotation and field of one declared result column."""
    annotation: Any = Any if c.is_json else (c.type | None if c.nullable else c.type)
    kwargs: dict[str, Any] = {"description": c.description or None}
    if c.is_json:
        kwargs["sa_type"] = JSON
    elif c.wide:
        kwargs["sa_type"] = BigInteger
    if c.max_length is not None:
        kwargs["max_length"] = c.max_length
    if c.nullable or c.default is not None:
        kwargs["default"] = c.default
    kwargs["nullable"] = c.nullable
    return annotation, Field(**kwargs)


ResultColumns: type[SQLModel] = create_model(
    "ResultColumns", __base__=SQLModel, **{c.name: _declared_field(c) for c in STORED_COLUMNS}
)
"""The result row's own columns, derived from ``compress.result_columns.RESULT_COLUMNS``."""


class ResultRow(ResultColumns, table=True):  # type: ignore[misc, valid-type]
    """One measured variant (or the baseline): one line of /comparison. Its result columns are declared in
    ``compress.result_columns``; here only what the store adds (keys, the per-layer table, the rest of the
    Measurement, the artifact, the time)."""

    __tablename__ = "result_rows"
    __table_args__ = (
        UniqueConstraint("job_id", "row_index"),
        Index("ix_result_rows_base_model_id", "base_model_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    row_index: int
    base_model_id: str = Field(foreign_key="base_models.id", max_length=64)
    layers: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    extra: Any = Field(default=None, sa_column=Column(JSON, nullable=True))  # the rest of the Measurement
    artifact_path: str | None = Field(default=None, max_length=500)
    created_at: datetime | None = _ts(nullable=False)


class IdempotencyKey(SQLModel, table=True):
    """A client's ``Idempotency-Key`` and what its first request created: a retry gets the same answer."""

    __tablename__ = "idempotency_keys"

    scope: str = Field(primary_key=True, max_length=32)  # the route: "jobs", "models"
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str = Field(max_length=64)  # sha256 of the request body: the same key with another body is refused
    job_id: int | None = Field(default=None, foreign_key="jobs.id")
    model_id: str | None = Field(default=None, foreign_key="base_models.id", max_length=64)
    created_at: datetime | None = _ts(nullable=False)


def measurement_values(m: Measurement) -> dict[str, Any]:
    """A Measurement as ResultRow values: its declared columns, its per-layer table, and the rest as ``extra``."""
    dumped = m.model_dump(mode="json")
    return {
        **{c: dumped[c] for c in MEASURED_COLUMNS},
        "layers": dumped["layers"],
        "extra": {k: v for k, v in dumped.items() if k not in MEASURED_COLUMNS and k != "layers"},
    }
