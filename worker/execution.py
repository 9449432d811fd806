"""What one job does, outside Celery so tests can call it in-process.

Claim the job (a conditional update from ``queued``), make sure its base model is trained, run the
compress library with a progress callback that writes progress and stage, then write every result
row and the job's final state in one transaction guarded by the lease token. While it runs, a
heartbeat thread stamps ``heartbeat_at`` every ``heartbeat_interval_s`` (so a long phase without
progress, a latency measurement or a long evaluation, never looks dead to the reaper), and the job
works in a temporary folder of its own that is removed however it ends.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from compress.baseline import Baseline, resolve_spec, train_baseline
from compress.datasets import DatasetError, DatasetSplit
from compress.layer_spec import ModelSpec, SpecError
from compress.measure import Measurement, measure
from compress.persistence import load_model
from compress.registry import UnknownNameError
from compress.runner import JobInputError, RowResult, Runner, Step
from compress.techniques.base import Context
from compress.training import Cancelled, TrainConfig, TrainingError
from store.artifacts import ArtifactStore
from store.data_roots import DataRootError, resolve_dataset_spec
from store.db import write
from store.settings import Settings
from store.tables import (
    BASELINE_TECHNIQUE,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    MODEL_FAILED,
    MODEL_READY,
    MODEL_TRAINING,
    MODEL_UNTRAINED,
    TERMINAL_STATUSES,
    BaseModelRow,
    Job,
    ResultRow,
    measurement_values,
    utcnow,
)
from worker import cache

log = logging.getLogger("netreduce.worker")

USER_ERRORS = (DatasetError, DataRootError, SpecError, JobInputError, TrainingError, UnknownNameError)


class LeaseLost(RuntimeError):
    """The job is no longer ours (cancelled while queued, or reassigned): stop without writing."""


class BaseTakenOver(LeaseLost):
    """Another job took over training our base model (it thought us dead): wait for it instead."""


class JobFailed(RuntimeError):
    """A readable reason to fail the job."""


def claim(engine: Engine, job_id: int) -> str | None:
    """Atomically move a queued job to running; the new lease token, or None when it was not queued.

    Only ``queued`` can be claimed: a message delivered again for a job that is running (its lease
    alive or not) is a no-op. A job whose worker died goes back to ``queued`` only through the reaper
    (``worker.reaper``), which counts the lost attempt; this claim then counts the new one.
    """
    token = uuid.uuid4().hex
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.status == JOB_QUEUED)
        .values(
            status=JOB_RUNNING,
            lease_token=token,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            updated_at=now,
            progress=0.0,
            stage="starting",
            error=None,
        )
    )
    rowcount = write(engine, lambda conn: conn.execute(stmt).rowcount)
    return token if rowcount == 1 else None


class Heartbeat:
    """A daemon thread that stamps the job's ``heartbeat_at`` every ``interval_s`` while it runs.

    The write is guarded by the lease token: once the job is no longer ours (the reaper gave it to
    another worker, or it was cancelled) the thread stops and ``lost`` is set. A failed write (the
    database restarting) is logged and tried again at the next beat.
    """

    def __init__(self, engine: Engine, job_id: int, token: str, interval_s: float) -> None:
        self.engine, self.job_id, self.token, self.interval_s = engine, job_id, token, interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{job_id}", daemon=True)

    def beat(self) -> bool:
        stmt = (
            update(Job)
            .where(Job.id == self.job_id, Job.lease_token == self.token, Job.status == JOB_RUNNING)
            .values(heartbeat_at=utcnow())
        )
        return write(self.engine, lambda conn: conn.execute(stmt).rowcount) == 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.beat():
                    self.lost.set()
                    return
            except Exception as exc:
                log.warning("job %s: heartbeat not written: %s", self.job_id, str(exc).splitlines()[0][:200])

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextlib.contextmanager
def job_tempdir(work_dir: str, job_id: int, redirect: bool) -> Iterator[Path]:
    """A fresh temporary folder for one job, removed however the job ends.

    With ``redirect`` (a Celery pool process runs one job at a time) ``tempfile`` and ``TMPDIR``
    point there for the job's duration, so whatever the libraries write lands there too. What a
    killed attempt left behind is removed when the job is claimed again on this machine.
    """
    path = Path(work_dir).resolve() / f"job-{job_id}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    saved = (tempfile.tempdir, os.environ.get("TMPDIR"))
    if redirect:
        tempfile.tempdir = str(path)
        os.environ["TMPDIR"] = str(path)
    try:
        yield path
    finally:
        if redirect:
            tempfile.tempdir = saved[0]
            if saved[1] is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(path, ignore_errors=True)


class JobReporter:
    """Progress callback and cancellation check of one running job, throttled to one write per interval."""

    def __init__(self, engine: Engine, job_id: int, token: str, interval_s: float) -> None:
        self.engine, self.job_id, self.token, self.interval_s = engine, job_id, token, interval_s
        self._last_write = float("-inf")
        self._last_check = float("-inf")
        self._cancel = False

    def _guarded(self) -> Any:
        return (Job.id == self.job_id) & (Job.lease_token == self.token) & (Job.status == JOB_RUNNING)

    def progress(self, fraction: float, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.interval_s:
            return

        def work(conn: Connection) -> bool:
            res = conn.execute(
                update(Job)
                .where(self._guarded())
                .values(progress=round(min(1.0, max(0.0, fraction)), 4), stage=stage[:500], heartbeat_at=utcnow())
            )
            if res.rowcount != 1:
                raise LeaseLost(f"job {self.job_id}: lease lost")
            return bool(conn.execute(select(Job.cancel_requested).where(Job.id == self.job_id)).scalar_one())

        self._cancel = write(self.engine, work)
        self._last_write = self._last_check = now

    def should_cancel(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self._cancel and (force or now - self._last_check >= self.interval_s):
            with self.engine.connect() as conn:
                self._cancel = bool(
                    conn.execute(select(Job.cancel_requested).where(Job.id == self.job_id)).scalar_one()
                )
            self._last_check = now
        return self._cancel

    def span(self, start: float, end: float, prefix: str = "") -> Callable[[float, str], None]:
        def scaled(fraction: float, stage: str) -> None:
            self.progress(start + (end - start) * fraction, f"{prefix}{stage}")

        return scaled


def _claim_job_guard(conn: Connection, job_id: int, token: str, **values: Any) -> None:
    res = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_token == token, Job.status == JOB_RUNNING)
        .values(updated_at=utcnow(), **values)
    )
    if res.rowcount != 1:
        raise LeaseLost(f"job {job_id}: lease lost before writing results")


def row_values(
    *,
    job_id: int,
    row_index: int,
    base_model_id: str,
    label: str,
    technique: str,
    params: dict[str, Any],
    recipe: list[dict[str, Any]],
    m: Measurement,
    accuracy_drop: float | None,
    trial: bool = False,
    strength: float | None = None,
    seed: int = 0,
    notes: dict[str, Any] | None = None,
    artifact_path: str | None = None,
) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "row_index": row_index,
        "base_model_id": base_model_id,
        "label": label[:1000],
        "technique": technique,
        "params": params,
        "recipe": recipe,
        **measurement_values(m),
        "accuracy_drop": accuracy_drop,
        "trial": trial,
        "strength": strength,
        "seed": seed,
        "notes": notes or {},
        "artifact_path": artifact_path,
        "created_at": utcnow(),
    }


@dataclass
class JobExecution:
    engine: Engine
    settings: Settings
    job_id: int
    token: str
    reporter: JobReporter

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifact_dir)

    def load(self, model_cls: type, key: Any) -> Any:
        with self.engine.connect() as conn:
            row = conn.execute(select(model_cls).where(model_cls.id == key)).mappings().one_or_none()
        return row

    # -- the base model ------------------------------------------------------------------------

    def dataset_for(self, base: Any) -> DatasetSplit:
        spec = resolve_dataset_spec(base["dataset"], self.settings.data_roots)
        seed = int((base["training"] or {}).get("seed", 0))
        return cache.dataset(spec, seed, self.settings.data_root, self.settings.allow_download)

    def _owner_gone(self, owner_id: int | None) -> bool:
        if owner_id is None or owner_id == self.job_id:
            return True
        owner = self.load(Job, owner_id)
        if owner is None or owner["status"] in TERMINAL_STATUSES or owner["status"] == JOB_QUEUED:
            return True
        beat = owner["heartbeat_at"]
        if beat is None:
            return True
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=utcnow().tzinfo)
        return utcnow() - beat > timedelta(seconds=self.settings.stale_after_s)

    def ensure_base_ready(self, base_id: str, kind: str, span_end: float) -> Any:
        """The base model's row once it is trained: train it here, or wait for the job training it.

        The first job that needs an untrained base model trains it (claimed with a conditional update,
        so two workers never both train it); others wait, writing their heartbeat, until it is ready.
        """
        waited = False
        while True:
            base = self.load(BaseModelRow, base_id)
            if base is None:
                raise JobFailed(f"base model '{base_id}' no longer exists")
            status, owner = base["status"], base["training_job_id"]
            if status == MODEL_READY and base["artifact_path"]:
                return base
            if status == MODEL_FAILED and waited:
                raise JobFailed(f"training the base model '{base_id}' failed: {base['error']}")
            if status in (MODEL_UNTRAINED, MODEL_FAILED) or (status == MODEL_TRAINING and self._owner_gone(owner)):
                cond = (
                    BaseModelRow.training_job_id.is_(None) if owner is None else (BaseModelRow.training_job_id == owner)
                )
                take = (
                    update(BaseModelRow)
                    .where(BaseModelRow.id == base_id, BaseModelRow.status == status, cond)
                    .values(status=MODEL_TRAINING, training_job_id=self.job_id, error=None, updated_at=utcnow())
                )
                if write(self.engine, lambda conn, take=take: conn.execute(take).rowcount) == 1:
                    try:
                        self.train_base(base_id, kind, span_end)
                    except BaseTakenOver as exc:
                        log.warning("job %s: %s; waiting for it", self.job_id, exc)
                continue
            waited = True
            if self.reporter.should_cancel():
                raise Cancelled("cancelled while waiting for the base model")
            self.reporter.progress(0.0, f"waiting for job {owner} to train base model '{base_id}'", force=True)
            time.sleep(min(1.0, max(0.05, self.settings.progress_interval_s)))

    def train_base(self, base_id: str, kind: str, span_end: float) -> None:
        base = self.load(BaseModelRow, base_id)
        try:
            data = self.dataset_for(base)
            if base["spec"]:
                spec = ModelSpec.model_validate(base["spec"])
            else:
                shape = tuple(base["input_shape"]) if base["input_shape"] else data.input_shape
                spec = resolve_spec(base["architecture"], shape, base["num_classes"] or data.num_classes)
            cfg = TrainConfig.model_validate(base["training"])
            prefix = "" if kind == "train" else "training base model: "
            uploaded = base["artifact_path"]  # POST /models/upload: pretrained weights, measured and not trained
            if uploaded:
                result = self.measure_uploaded(uploaded, data)
            else:
                result = train_baseline(
                    spec,
                    data,
                    cfg,
                    progress=self.reporter.span(0.0, span_end, prefix),
                    should_cancel=self.reporter.should_cancel,
                    latency_runs=self.settings.latency_runs,
                )
            if self.reporter.should_cancel(force=True):
                raise Cancelled("cancelled after training")
            name = uploaded or self.artifacts.save(result.model, spec, f"base-{base_id}")[0]
        except BaseException as exc:
            reason = "untrained" if isinstance(exc, Cancelled | LeaseLost) else MODEL_FAILED
            self._release_base(base_id, reason, _readable(exc))
            raise
        values = row_values(
            job_id=self.job_id,
            row_index=0,
            base_model_id=base_id,
            label="baseline",
            technique=BASELINE_TECHNIQUE,
            params=cfg.model_dump(mode="json"),
            recipe=[],
            m=result.measurement,
            accuracy_drop=0.0,
            seed=cfg.seed,
            notes={"losses": [round(x, 5) for x in result.losses], "dataset": base["dataset"]},
            artifact_path=name,
        )

        def final(conn: Connection) -> None:
            job_done = {"status": JOB_SUCCEEDED, "progress": 1.0, "stage": "done", "finished_at": utcnow()}
            _claim_job_guard(conn, self.job_id, self.token, **(job_done if kind == "train" else {}))
            res = conn.execute(
                update(BaseModelRow)
                .where(
                    BaseModelRow.id == base_id,
                    BaseModelRow.status == MODEL_TRAINING,
                    BaseModelRow.training_job_id == self.job_id,
                )
                .values(
                    status=MODEL_READY,
                    artifact_path=name,
                    baseline=result.measurement.model_dump(mode="json"),
                    spec=spec.model_dump(mode="json"),
                    input_shape=list(spec.input_shape),
                    num_classes=spec.num_classes,
                    error=None,
                    updated_at=utcnow(),
                )
            )
            if res.rowcount != 1:
                raise BaseTakenOver(f"base model '{base_id}' was taken over by another job")
            conn.execute(insert(ResultRow).values(**values))

        try:
            write(self.engine, final)
        except (LeaseLost, IntegrityError):
            if name != uploaded:
                self.artifacts.delete(name)
            raise

    def measure_uploaded(self, name: str, data: DatasetSplit) -> Baseline:
        """An uploaded model's baseline: its stored weights measured on its data set, no training."""
        model, spec = load_model(self.artifacts.path(name))
        data.check_fits(spec.input_shape, spec.num_classes)
        self.reporter.progress(0.05, "measuring the uploaded weights", force=True)
        return Baseline(model, spec, measure(model, spec, data, latency_runs=self.settings.latency_runs), [])

    def _release_base(self, base_id: str, status: str, error: str) -> None:
        stmt = (
            update(BaseModelRow)
            .where(BaseModelRow.id == base_id, BaseModelRow.training_job_id == self.job_id)
            .where(BaseModelRow.status == MODEL_TRAINING)
            .values(status=status, error=None if status == MODEL_UNTRAINED else error, updated_at=utcnow())
        )
        write(self.engine, lambda conn: conn.execute(stmt))

    # -- jobs ----------------------------------------------------------------------------------

    def run_train(self, job: Any) -> None:
        base = self.ensure_base_ready(job["base_model_id"], "train", 1.0)
        if base["training_job_id"] != self.job_id:  # trained before (or by another job): nothing to do
            write(
                self.engine,
                lambda conn: _claim_job_guard(
                    conn,
                    self.job_id,
                    self.token,
                    status=JOB_SUCCEEDED,
                    progress=1.0,
                    stage=f"already trained by job {base['training_job_id']}",
                    finished_at=utcnow(),
                ),
            )

    def run_compress(self, job: Any) -> None:
        steps = [Step.model_validate(s) for s in job["steps"] or []]
        base = self.ensure_base_ready(job["base_model_id"], "compress", 0.3)
        start = 0.3 if base["training_job_id"] == self.job_id else 0.0
        data = self.dataset_for(base)
        model, spec = cache.base_model(base["id"], str(self.artifacts.path(base["artifact_path"])))
        base_m = Measurement.model_validate(base["baseline"])
        ctx = Context(
            data=data,
            base_model=model,
            base_spec=spec,
            base_accuracy=base_m.accuracy,
            progress=self.reporter.span(start, 0.98),
            should_cancel=self.reporter.should_cancel,
            calibration_samples=self.settings.calibration_samples,
        )
        results = Runner(ctx, base_m, latency_runs=self.settings.latency_runs).run(steps, model, spec)
        if self.reporter.should_cancel(force=True):
            raise Cancelled("cancelled on request")
        self.write_results(job, results)

    def write_results(self, job: Any, results: list[RowResult]) -> None:
        """Save the kept models, then write every row and the final state in one guarded transaction."""
        saved: list[str] = []
        rows = []
        try:
            for i, r in enumerate(results):
                name = None
                if r.model is not None and not r.row.trial:
                    name, _ = self.artifacts.save(r.model, r.spec, f"job{self.job_id}-row{i + 1}")
                    saved.append(name)
                row = r.row
                rows.append(
                    row_values(
                        job_id=self.job_id,
                        row_index=i + 1,  # 0 is kept for the baseline row a job may write
                        base_model_id=job["base_model_id"],
                        label=row.label,
                        technique=row.technique,
                        params=row.params,
                        recipe=[s.model_dump(mode="json") for s in row.recipe],
                        m=row.measurement,
                        accuracy_drop=row.accuracy_drop,
                        trial=row.trial,
                        strength=row.strength,
                        seed=row.seed,
                        notes=row.notes,
                        artifact_path=name,
                    )
                )

            def final(conn: Connection) -> None:
                _claim_job_guard(
                    conn,
                    self.job_id,
                    self.token,
                    status=JOB_SUCCEEDED,
                    progress=1.0,
                    stage=f"done: {len(rows)} row(s)",
                    finished_at=utcnow(),
                )
                if rows:
                    conn.execute(insert(ResultRow), rows)

            write(self.engine, final)
        except BaseException:
            for name in saved:
                self.artifacts.delete(name)
            raise

    def finish(self, status: str, error: str | None, stage: str) -> None:
        stmt = (
            update(Job)
            .where(Job.id == self.job_id, Job.lease_token == self.token, Job.status == JOB_RUNNING)
            .values(status=status, error=error, stage=stage, finished_at=utcnow(), updated_at=utcnow())
        )
        write(self.engine, lambda conn: conn.execute(stmt))


def _readable(exc: BaseException) -> str:
    if isinstance(exc, (*USER_ERRORS, JobFailed, Cancelled)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def execute_job(job_id: int, engine: Engine, settings: Settings, redirect_tmp: bool = False) -> str:
    """Run one job to a terminal state; returns what happened (``skipped`` when it was not queued).

    ``redirect_tmp``: point the process's temporary folder at the job's own (only where one process
    runs one job at a time: the Celery task).
    """
    if torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    token = claim(engine, job_id)
    if token is None:
        log.info("job %s: not queued (missing, cancelled or taken); nothing to do", job_id)
        return "skipped"
    Path(settings.artifact_dir).mkdir(parents=True, exist_ok=True)
    with (
        Heartbeat(engine, job_id, token, settings.heartbeat_interval_s),
        job_tempdir(settings.work_dir, job_id, redirect_tmp),
    ):
        return _run_claimed(job_id, token, engine, settings)


def _run_claimed(job_id: int, token: str, engine: Engine, settings: Settings) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    reporter = JobReporter(engine, job_id, token, settings.progress_interval_s)
    run = JobExecution(engine, settings, job_id, token, reporter)
    try:
        job = run.load(Job, job_id)
        if job["cancel_requested"]:
            raise Cancelled("cancelled before it started")
        if job["kind"] == "train":
            run.run_train(job)
        else:
            run.run_compress(job)
        return JOB_SUCCEEDED
    except LeaseLost as exc:
        log.warning("%s; results discarded", exc)
        return "lease-lost"
    except Cancelled as exc:
        run.finish(JOB_CANCELLED, None, str(exc) or "cancelled")
        return JOB_CANCELLED
    except SoftTimeLimitExceeded:
        log.warning("job %s: soft time limit (%s s) exceeded", job_id, settings.worker_soft_time_limit_s)
        run.finish(JOB_FAILED, f"timeout: exceeded the {settings.worker_soft_time_limit_s} s time limit", "timeout")
        return JOB_FAILED
    except (*USER_ERRORS, JobFailed, ValueError, KeyError) as exc:
        run.finish(JOB_FAILED, _readable(exc), "failed")
        return JOB_FAILED
    except Exception as exc:
        log.error("job %s crashed:\n%s", job_id, traceback.format_exc())
        run.finish(JOB_FAILED, _readable(exc), "failed")
        return JOB_FAILED
