"""SQLModel tables: base models, jobs and result rows. The schema changes only through migrations/."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

import store.db  # noqa: F401  (sets the naming convention before any table is declared)

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
JOB_KINDS = ("train", "compress")

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


def _big(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(BigInteger, nullable=nullable))


class ResultRow(SQLModel, table=True):
    """One measured variant (or the baseline): one line of /comparison."""

    __tablename__ = "result_rows"
    __table_args__ = (
        UniqueConstraint("job_id", "row_index"),
        Index("ix_result_rows_base_model_id", "base_model_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id")
    row_index: int
    base_model_id: str = Field(foreign_key="base_models.id", max_length=64)
    label: str = Field(max_length=1000)
    technique: str = Field(max_length=500)
    params: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    recipe: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    n_params: int | None = _big()
    bytes: int | None = _big()
    file_bytes: int | None = _big()
    macs: int | None = _big()
    flops: int | None = _big()
    ops: int | None = _big()
    sparse_macs: int | None = _big()
    accuracy: float | None = None
    accuracy_drop: float | None = None
    latency_ms_bs1: float | None = None
    latency_ms_bs64: float | None = None
    trial: bool = False
    strength: float | None = None
    seed: int = 0
    notes: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
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
