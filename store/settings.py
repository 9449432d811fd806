"""Every knob of the service, read once from ``NETREDUCE_*`` environment variables (or ``.env``)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults give the embedded single-machine setup: SQLite and a server-less broker under ``var/``."""

    model_config = SettingsConfigDict(env_prefix="NETREDUCE_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/netreduce.db",
        description="SQLAlchemy URL of the results database (SQLite file or postgresql+psycopg2://...).",
    )
    broker_url: str = Field(
        default="sqla+sqlite:///var/broker.db",
        description="Celery broker: kombu's server-less SQLAlchemy transport by default, redis://... in compose.",
    )
    broker_visibility_timeout_s: int = Field(
        default=3600, ge=1, description="Redis: seconds before an unacknowledged message is delivered again."
    )
    broker_poll_s: float = Field(
        default=0.1,
        gt=0,
        le=60,
        description="SQLAlchemy/filesystem broker: seconds between polls of the queue (kombu's default: 1).",
    )
    queue: str = Field(default="netreduce", description="Celery queue the API sends job ids to.")
    extra_task_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="More modules each worker imports with its tasks (comma-separated or JSON); none in production.",
    )
    artifact_dir: str = Field(default="var/artifacts", description="Folder for stored .safetensors models.")
    data_root: str = Field(default="data", description="Folder torchvision data sets (mnist, cifar10...) live in.")
    data_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["data", "../shared/data"],
        description="Folders an idx:/npz: data set spec may name (comma-separated or a JSON list).",
    )
    allow_download: bool = Field(default=False, description="Let torchvision download missing data sets.")
    torch_threads: int = Field(
        default=1,
        ge=1,
        le=256,
        description="torch.set_num_threads in each worker process: the threads every latency figure is measured "
        "with (recorded per row in torch_threads and latency_conditions), and bench/'s default. 1: one core per "
        "inference worker, the way a CPU server scales out (compose --scale worker=N), and figures that do not "
        "depend on how many workers share the machine. Set it to the cores one model will get when deployed.",
    )
    worker_soft_time_limit_s: int = Field(
        default=1800, ge=1, description="Seconds before a job is asked to stop (fails with reason timeout)."
    )
    worker_hard_time_limit_s: int = Field(
        default=1900, ge=1, description="Seconds before the worker process running a job is killed."
    )
    latency_runs: int = Field(default=20, ge=1, le=1000, description="Timed forward passes per latency figure.")
    retime_rounds: int = Field(
        default=7, ge=1, le=100, description="A retime's interleaved rounds (each visits every network once)."
    )
    retime_runs: int = Field(
        default=10, ge=1, le=1000, description="Timed passes per network, batch size and round of a retime."
    )
    calibration_samples: int = Field(default=1000, ge=1, description="Training images used to calibrate int8.")
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Attempts a job gets (stored on the job; a reaper fails it after that many).",
    )
    progress_interval_s: float = Field(
        default=0.5, ge=0.0, description="Minimum seconds between progress/heartbeat writes of a running job."
    )
    stale_after_s: float = Field(
        default=120.0, gt=0, description="A running job whose heartbeat is older than this is presumed dead."
    )
    heartbeat_interval_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between heartbeat writes of a running job (a thread, so long silent phases stay alive).",
    )
    reaper_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="Seconds between two passes of each worker's reaper and reconciler (0 turns them off).",
    )
    requeue_after_s: float = Field(
        default=300.0,
        gt=0,
        description="A queued job not claimed this long after its id was last sent is sent again (reconciler).",
    )
    work_dir: str = Field(default="var/work", description="Folder of the per-job temporary folders (always removed).")
    cache_models: int = Field(default=4, ge=1, description="Base models (weights) each worker process keeps loaded.")
    cache_datasets: int = Field(default=2, ge=1, description="Data sets each worker process keeps in memory.")
    api_token: str | None = Field(
        default=None,
        description="When set, POST/PUT/PATCH/DELETE need `Authorization: Bearer <token>` (401 without); empty = off.",
    )
    protect_reads: bool = Field(default=False, description="With api_token: GET requests need the token too.")
    db_slots: int = Field(
        default=8,
        ge=1,
        le=256,
        description="Requests whose database work runs at once in the API (each in one thread with one connection).",
    )
    db_max_waiting: int = Field(
        default=512, ge=0, description="Requests that may wait for a database slot; more are answered 503 at once."
    )
    db_wait_s: float = Field(
        default=10.0, gt=0, le=300, description="Longest wait for a database slot before a 503 with Retry-After."
    )
    page_limit_max: int = Field(default=500, ge=1, description="Largest page GET /jobs returns.")
    max_request_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest request body (bytes) except uploads; more is a 413."
    )
    max_upload_bytes: int = Field(
        default=128 * 1_048_576, ge=1024, description="Largest POST /models/upload body (bytes), counted while read."
    )
    max_spec_layers: int = Field(default=256, ge=1, description="Most layers (nested ones included) a layer spec has.")
    max_model_params: int = Field(
        default=50_000_000, ge=1, description="Most parameters a base model may have (counted before it is built)."
    )
    max_activation_elements: int = Field(
        default=8_000_000, ge=1, description="Largest output (elements per sample) of any layer of a base model."
    )

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        """compose passes ``NETREDUCE_API_TOKEN=`` when the variable is unset: that means no token."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("data_roots", "extra_task_modules", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _heartbeat_beats_staleness(self) -> Settings:
        if self.heartbeat_interval_s >= self.stale_after_s:
            raise ValueError(
                f"heartbeat_interval_s ({self.heartbeat_interval_s}) must be below stale_after_s "
                f"({self.stale_after_s}), or every running job would look dead"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own ``Settings(...)``)."""
    return Settings()
