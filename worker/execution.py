"""What one job does, outside Celery so tests can call it in-process.

Claim the job (a conditional update from ``queued``), make sure its base model is trained, run the
compress library with a progress callback that writes progress and stage, then write every result
row and the job's final state in one transaction guarded by the lease token. While it runs, a
heartbeat thread stamps ``heartbeat_at`` every ``heartbeat_interval_s`` (so a long phase without
progress, a latency measurement or a long evaluation, never looks dead to the reaper), and the job
works in a temporary folder of its own that is removed however it ends.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from torch import nn

from compress.baseline import Baseline, resolve_spec, train_baseline
from compress.datasets import DatasetError, DatasetSplit
from compress.layer_spec import ModelSpec, SpecError
from compress.measure import Measurement, measure
from compress.persistence import load_model
from compress.registry import UnknownNameError
from compress.result_columns import VARIANT_COLUMNS
from compress.runner import JobInputError, RowResult, Runner, Step, VariantRow
from compress.techniques.base import Context
from compress.training import Cancelled, TrainConfig, TrainingError
from store import jobs
from store.artifacts import ArtifactStore
from store.data_roots import DataRootError, resolve_dataset_spec
from store.jobs import BaseTakenOver, Lease, LeaseLost
from store.onnx_exports import calibration_for, delete_export
from store.results import baseline_row
from store.settings import Settings
from store.tables import (
    BASELINE_TECHNIQUE,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_SUCCEEDED,
    MODEL_FAILED,
    MODEL_READY,
    MODEL_TRAINING,
    MODEL_UNTRAINED,
    BaseModelRow,
    Job,
    ResultRow,
    measurement_values,
    utcnow,
)
from worker import cache
from worker.errors import JobFailed
from worker.onnx_figures import add_onnx_figures
from worker.retime import run_retime
from worker.running import Heartbeat, JobReporter, job_tempdir

log = logging.getLogger("netreduce.worker")

USER_ERRORS = (DatasetError, DataRootError, SpecError, JobInputError, TrainingError, UnknownNameError)


def result_row_from(m: Measurement, **values: Any) -> ResultRow:
    """The stored row of one measurement; ``values``: the row's other columns (job, label, params...)."""
    values["label"] = values["label"][:1000]
    values["notes"] = values.get("notes") or {}
    return ResultRow(**values, **measurement_values(m), created_at=utcnow())


def measurement_from(row: ResultRow) -> Measurement:
    """The measurement a row was written from (:func:`result_row_from`'s inverse)."""
    return Measurement.model_validate({**(row.extra or {}), **row.model_dump(exclude={"extra"})})


@dataclass
class JobExecution:
    engine: Engine
    settings: Settings
    lease: Lease
    reporter: JobReporter

    @property
    def job_id(self) -> int:
        return self.lease.job_id

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.settings.artifact_dir)

    # -- the base model ------------------------------------------------------------------------

    def dataset_for(self, base: BaseModelRow) -> DatasetSplit:
        spec = resolve_dataset_spec(base.dataset, self.settings.data_roots)
        seed = int((base.training or {}).get("seed", 0))
        return cache.dataset(spec, seed, self.settings.data_root, self.settings.allow_download)

    def ensure_base_ready(self, base_id: str, kind: str, span_end: float) -> BaseModelRow:
        """The base model's row once it is trained: train it here, or wait for the job training it.

        The first job that needs an untrained base model trains it (claimed with a conditional update,
        so two workers never both train it); others wait, writing their heartbeat, until it is ready.
        """
        waited = False
        while True:
            base = jobs.read(self.engine, BaseModelRow, base_id)
            if base is None:
                raise JobFailed(f"base model '{base_id}' no longer exists")
            status, owner = base.status, base.training_job_id
            if status == MODEL_READY and base.artifact_path:
                return base
            if status == MODEL_FAILED and waited:
                raise JobFailed(f"training the base model '{base_id}' failed: {base.error}")
            if status in (MODEL_UNTRAINED, MODEL_FAILED) or (status == MODEL_TRAINING and self._trainer_gone(owner)):
                if jobs.take_base(self.engine, base_id, self.job_id, status, owner):
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

    def _trainer_gone(self, owner: int | None) -> bool:
        return jobs.trainer_gone(self.engine, owner, self.job_id, self.settings.stale_after_s)

    def _trained(self, base: BaseModelRow, kind: str, span_end: float) -> tuple[Baseline, ModelSpec, TrainConfig]:
        """Train the base model, or measure its uploaded weights (POST /models/upload: not trained)."""
        data = self.dataset_for(base)
        if base.spec:
            spec = ModelSpec.model_validate(base.spec)
        else:
            shape = tuple(base.input_shape) if base.input_shape else data.input_shape
            spec = resolve_spec(base.architecture, shape, base.num_classes or data.num_classes)
        cfg = TrainConfig.model_validate(base.training)
        if base.artifact_path:
            return self.measure_uploaded(base.artifact_path, data), spec, cfg
        prefix = "" if kind == "train" else "training base model: "
        result = train_baseline(
            spec,
            data,
            cfg,
            progress=self.reporter.span(0.0, span_end, prefix),
            should_cancel=self.reporter.should_cancel,
            latency_runs=self.settings.latency_runs,
        )
        return result, spec, cfg

    def train_base(self, base_id: str, kind: str, span_end: float) -> None:
        base = jobs.read(self.engine, BaseModelRow, base_id)
        assert base is not None
        uploaded = base.artifact_path
        try:
            result, spec, cfg = self._trained(base, kind, span_end)
            if self.reporter.should_cancel(force=True):
                raise Cancelled("cancelled after training")
            name = uploaded or self.artifacts.save(result.model, spec, f"base-{base_id}")[0]
            onnx = self.onnx_figures(name, result.model, result.measurement, self.dataset_for(base), [], cfg.seed)
        except BaseException as exc:
            status = MODEL_UNTRAINED if isinstance(exc, Cancelled | LeaseLost) else MODEL_FAILED
            jobs.release_base(self.engine, base_id, self.job_id, status, _readable(exc))
            raise
        row = result_row_from(
            result.measurement,
            job_id=self.job_id,
            row_index=0,
            base_model_id=base_id,
            label="baseline",
            technique=BASELINE_TECHNIQUE,
            params=cfg.model_dump(mode="json"),
            recipe=[],
            accuracy_drop=0.0,
            seed=cfg.seed,
            notes={"losses": [round(x, 5) for x in result.losses], "dataset": base.dataset, "onnx": onnx},
            artifact_path=name,
        )
        ready = {"artifact_path": name, "spec": spec.model_dump(mode="json")}
        ready |= {"input_shape": list(spec.input_shape), "num_classes": spec.num_classes}
        try:
            self.lease.base_trained(base_id, ready, row, "done" if kind == "train" else None)
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

    def baseline_of(self, base: BaseModelRow) -> Measurement:
        with Session(self.engine) as session:
            row = baseline_row(session, base.id)
        if row is None:
            raise JobFailed(f"base model '{base.id}' is ready but has no baseline row")
        return measurement_from(row)

    # -- jobs ----------------------------------------------------------------------------------

    def run_train(self, job: Job) -> None:
        base = self.ensure_base_ready(job.base_model_id, "train", 1.0)
        if base.training_job_id != self.job_id:  # trained before (or by another job): nothing to do
            self.lease.succeed([], stage=f"already trained by job {base.training_job_id}")

    def run_compress(self, job: Job) -> None:
        steps = [Step.model_validate(s) for s in job.steps or []]
        base = self.ensure_base_ready(job.base_model_id, "compress", 0.3)
        start = 0.3 if base.training_job_id == self.job_id else 0.0
        data = self.dataset_for(base)
        assert base.artifact_path is not None
        model, spec = cache.base_model(base.id, str(self.artifacts.path(base.artifact_path)))
        base_m = self.baseline_of(base)
        ctx = Context(
            data=data,
            base_model=model,
            base_spec=spec,
            base_accuracy=base_m.accuracy,
            progress=self.reporter.span(start, 0.98),
            should_cancel=self.reporter.should_cancel,
            calibration_samples=self.settings.calibration_samples,
            base_training=TrainConfig.model_validate(base.training) if base.training else None,
        )
        runner = Runner(ctx, base_m, latency_runs=self.settings.latency_runs)
        results = runner.run(steps, model, spec)
        if self.reporter.should_cancel(force=True):
            raise Cancelled("cancelled on request")
        self.write_results(job, results, data, runner.job_notes)

    def write_results(
        self, job: Job, results: list[RowResult], data: DatasetSplit, notes: dict[str, Any] | None = None
    ) -> None:
        """Save the kept models (and their ONNX exports), then write every row and the final state in one
        guarded transaction."""
        saved: list[str] = []
        rows = []
        try:
            for i, r in enumerate(results):
                name = None
                if r.model is not None and not r.row.trial:
                    name, _ = self.artifacts.save(r.model, r.spec, f"job{self.job_id}-row{i + 1}")
                    saved.append(name)
                    self.reporter.progress(0.985, "exporting to ONNX", force=True)
                    recipe = [s.model_dump(mode="json") for s in r.row.recipe]
                    onnx = self.onnx_figures(name, r.model, r.row.measurement, data, recipe, r.row.seed)
                    r.row.notes = {**r.row.notes, "onnx": onnx}
                rows.append(self._row(job, i + 1, r.row, name))
            self.lease.succeed(rows, notes=notes)
        except BaseException:
            for name in saved:
                self.artifacts.delete(name)
                delete_export(self.artifacts, name)
            raise

    def onnx_figures(
        self, name: str, model: nn.Module, m: Measurement, data: DatasetSplit, recipe: list[dict[str, Any]], seed: int
    ) -> dict[str, Any]:
        calibration = calibration_for(recipe, seed, self.settings.calibration_samples)
        return add_onnx_figures(self.artifacts, name, model, m, data, calibration, self.settings.latency_runs)

    def _row(self, job: Job, row_index: int, row: VariantRow, artifact: str | None) -> ResultRow:
        """Row 0 is kept for the baseline row a job may write."""
        return result_row_from(
            row.measurement,
            job_id=self.job_id,
            row_index=row_index,
            base_model_id=job.base_model_id,
            artifact_path=artifact,
            **row.model_dump(mode="json", include=set(VARIANT_COLUMNS)),
        )


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
    lease = jobs.claim(engine, job_id)
    if lease is None:
        log.info("job %s: not queued (missing, cancelled or taken); nothing to do", job_id)
        return "skipped"
    Path(settings.artifact_dir).mkdir(parents=True, exist_ok=True)
    with (
        Heartbeat(lease, settings.heartbeat_interval_s),
        job_tempdir(settings.work_dir, job_id, redirect_tmp),
    ):
        return _run_claimed(lease, engine, settings)


def _run_claimed(lease: Lease, engine: Engine, settings: Settings) -> str:
    from celery.exceptions import SoftTimeLimitExceeded

    run = JobExecution(engine, settings, lease, JobReporter(lease, settings.progress_interval_s))
    try:
        job = jobs.read(engine, Job, lease.job_id)
        if job is None or job.cancel_requested:
            raise Cancelled("cancelled before it started")
        if job.kind == "train":
            run.run_train(job)
        elif job.kind == "retime":
            run_retime(run, job.base_model_id)
        else:
            run.run_compress(job)
        return JOB_SUCCEEDED
    except LeaseLost as exc:
        log.warning("%s; results discarded", exc)
        return "lease-lost"
    except Cancelled as exc:
        lease.cancel(str(exc) or "cancelled")
        return JOB_CANCELLED
    except SoftTimeLimitExceeded:
        limit = settings.worker_soft_time_limit_s
        log.warning("job %s: soft time limit (%s s) exceeded", lease.job_id, limit)
        lease.fail(f"timeout: exceeded the {limit} s time limit", "timeout")
        return JOB_FAILED
    except (*USER_ERRORS, JobFailed, ValueError, KeyError) as exc:
        lease.fail(_readable(exc))
        return JOB_FAILED
    except Exception as exc:
        log.error("job %s crashed:\n%s", lease.job_id, traceback.format_exc())
        lease.fail(_readable(exc))
        return JOB_FAILED
