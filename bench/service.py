"""The service's overhead on a job, and /comparison under load.

Starts its own service in a temporary folder: ``alembic upgrade head``, uvicorn and a real Celery
worker process (prefork, concurrency 1), on SQLite + kombu's server-less ``sqla+sqlite`` broker
(default) or on Redis 127.0.0.1:6379 (db 14, flushed) + PostgreSQL 127.0.0.1:5432 database ``test``
(schema ``netreduce_bench``, dropped and recreated) with ``--stack real``. Loopback only; every child
is stopped (its whole process group) and the folder removed at the end.

Service overhead: mnist-cnn is trained on the shared split through ``POST /models``; after one warm-up job (the
worker loads the base model and data set once), the same compress jobs are run alternately through
HTTP + queue + database (``POST /jobs``, polled until finished) and as the same ``Runner`` call in
this process (on the service's trained weights, same threads and latency passes); ratio of medians.

/comparison under load: the base model's comparison is filled to 500 rows through the store layer (result rows copied
from a real job with varied figures), then 10 asyncio httpx clients (one connection each) call
``GET /comparison`` for a bounded time and count; requests/s, p50 and p99.

Usage: python -m bench.service [--stack embedded|real] [--threads 2] [--reps 3] [--load-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import gc
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.common import (  # noqa: E402
    DEFAULT_DATA,
    ROOT,
    Target,
    common_args,
    compact_params,
    console,
    machine_record,
    print_machine,
    print_target_lines,
    set_threads,
    targets_table,
    training_config,
)
from store.settings import Settings  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}
REDIS_URL = "redis://127.0.0.1:6379/14"
PG_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
PG_SCHEMA = "netreduce_bench"
PG_URL = f"{PG_ADMIN_URL}?options=-csearch_path%3D{PG_SCHEMA}"

# the jobs timed both ways: a representative one (fine-tuning) and a short one (fixed costs dominate)
OVERHEAD_JOBS = [
    ("prune-l1", {"scope": "global", "amount": 0.8, "retrain": "finetune", "epochs": 1}),
    ("quantize-int8", {"backend": "fbgemm"}),
]
WARMUP_JOB = ("quantize-dynamic", {})
COMPARISON_ROWS = 500
CLIENTS = 10
MAX_REQUESTS = 50_000


class ServiceError(RuntimeError):
    """The service did not start or a request failed: the message says what and shows the log tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A child process in its own session (so stopping it ends its whole process group), logging to a file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name, self.log = name, cwd / f"{name}.log"
        self._fh = self.log.open("wb")
        self.popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self._fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-n:]
        return f"--- {self.name} log ---\n" + "\n".join(lines)

    def stop(self, grace_s: float = 15.0) -> None:
        if self.alive():
            self.popen.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # the prefork pool child too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._fh.close()


class Service:
    """uvicorn + a Celery worker on loopback, in a temporary folder; a context manager."""

    def __init__(self, stack: str, threads: int, latency_runs: int, broker_poll_s: float | None = None) -> None:
        self.stack, self.threads, self.latency_runs = stack, threads, latency_runs
        self.broker_poll_s = broker_poll_s
        self.children: list[Child] = []
        self.dir = Path(tempfile.mkdtemp(prefix="netreduce-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if stack == "real":
            self.database_url, self.broker_url = PG_URL, REDIS_URL
        else:
            self.database_url = f"sqlite:///{self.dir / 'netreduce.db'}"
            self.broker_url = f"sqla+sqlite:///{self.dir / 'broker.db'}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NETREDUCE_")}
        settings = {
            "database_url": self.database_url,
            "broker_url": self.broker_url,
            "queue": f"bench-{os.getpid()}",
            "artifact_dir": str(self.dir / "artifacts"),
            "data_roots": str(DEFAULT_DATA.parent.resolve()),
            "torch_threads": str(self.threads),
            "latency_runs": str(self.latency_runs),
        }
        if self.broker_poll_s is not None:  # else the setting's default (store.queue applies it)
            settings["broker_poll_s"] = str(self.broker_poll_s)
        env.update({f"NETREDUCE_{k.upper()}": v for k, v in settings.items()})
        env["PYTHONUNBUFFERED"] = "1"
        paths = (str(ROOT), str(self.dir), env.get("PYTHONPATH", ""))
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return env

    def _prepare_real(self) -> None:
        import redis
        from sqlalchemy import create_engine, text

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).flushdb()
        except Exception as exc:
            raise ServiceError(f"--stack real: Redis at 127.0.0.1:6379 is not reachable: {exc}") from None
        try:
            engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {PG_SCHEMA}"))
            engine.dispose()
        except Exception as exc:
            raise ServiceError(
                f"--stack real: PostgreSQL at 127.0.0.1:5432 (db test) is not reachable: {exc}"
            ) from None

    def __enter__(self) -> Service:
        try:
            if self.stack == "real":
                self._prepare_real()
            from store.migrate import upgrade_head

            upgrade_head(self.database_url)
            env, py = self.env(), sys.executable
            api = [py, "-m", "uvicorn", "api.main:app", "--host", "127.0.0.1", "--port", str(self.port)]
            api += ["--log-level", "warning"]
            worker = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=prefork", "--concurrency=1"]
            worker += ["-Q", env["NETREDUCE_QUEUE"], "--loglevel=INFO", "--without-gossip", "--without-mingle"]
            worker += ["--without-heartbeat", "-n", f"bench-{os.getpid()}@%h"]
            self.children.append(Child("api", api, env, self.dir))
            self.children.append(Child("worker", worker, env, self.dir))
            self.wait_healthy()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_: Any) -> None:
        for c in reversed(self.children):
            c.stop()
        self.children.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(c.tail() for c in self.children)

    def check_alive(self) -> None:
        for c in self.children:
            if not c.alive():
                raise ServiceError(f"{c.name} exited ({c.popen.returncode})\n{self.logs()}")

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        deadline, last = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                r = httpx.get(f"{self.url}/healthz", timeout=3)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:300]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.3)
        raise ServiceError(f"not healthy after {timeout_s:.0f} s: {last}\n{self.logs()}")


# -- service overhead -------------------------------------------------------------------------


def _check(r: httpx.Response, what: str, *codes: int) -> dict[str, Any]:
    if r.status_code not in codes:
        raise ServiceError(f"{what}: HTTP {r.status_code} {r.text[:500]}")
    return r.json()


def wait_job(client: httpx.Client, svc: Service, job_id: int, timeout_s: float, poll_s: float = 0.05) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _check(client.get(f"/jobs/{job_id}"), f"GET /jobs/{job_id}", 200)
        if job["status"] in TERMINAL:
            if job["status"] != "succeeded":
                raise ServiceError(f"job {job_id} {job['status']}: {job.get('error')}\n{svc.logs()}")
            return job
        svc.check_alive()
        time.sleep(poll_s)
    raise ServiceError(f"job {job_id} not finished after {timeout_s:.0f} s\n{svc.logs()}")


def service_job(client: httpx.Client, svc: Service, model_id: str, technique: str, params: dict) -> tuple[float, dict]:
    """Wall seconds from POST /jobs to the client seeing it succeeded, and the finished job."""
    t0 = time.perf_counter()
    body = {"base_model_id": model_id, "technique": technique, "params": params, "rerun": True}  # run it every time
    job = _check(client.post("/jobs", json=body), "POST /jobs", 202)
    done = wait_job(client, svc, job["id"], timeout_s=1800)
    return time.perf_counter() - t0, done


def _server_spans(job: dict) -> tuple[float, float] | None:
    """(queued → started, started → finished) seconds from the job's own timestamps."""
    from datetime import datetime

    try:
        created, started, finished = (
            datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")
        )
    except (KeyError, TypeError, ValueError):
        return None
    return (started - created).total_seconds(), (finished - started).total_seconds()


def train_through_service(client: httpx.Client, svc: Service, seed: int) -> tuple[str, float, int]:
    cfg = training_config(seed)
    body = {
        "name": "bench mnist-cnn",
        "architecture": "mnist-cnn",
        "dataset": f"idx:{DEFAULT_DATA.resolve()}",
        "training": cfg.model_dump(mode="json"),
    }
    t0 = time.perf_counter()
    created = _check(client.post("/models", json=body), "POST /models", 202)
    wait_job(client, svc, created["training_job_id"], timeout_s=1800)
    return created["id"], time.perf_counter() - t0, created["training_job_id"]


def in_process_runner(client: httpx.Client, model_id: str, train_job: int, threads: int, latency_runs: int):  # noqa: ANN201
    """The same Runner call as the worker's, in this process, on the service's trained weights."""
    from compress.datasets import load_dataset
    from compress.persistence import model_from_bytes
    from compress.runner import Runner, Step
    from compress.techniques.base import Context
    from store.artifacts import ArtifactStore
    from store.onnx_exports import calibration_for
    from worker.onnx_figures import add_onnx_figures

    r = client.get(f"/jobs/{train_job}/artifact")
    if r.status_code != 200:
        raise ServiceError(f"GET /jobs/{train_job}/artifact: HTTP {r.status_code} {r.text[:300]}")
    model, spec = model_from_bytes(r.content)
    info = _check(client.get(f"/models/{model_id}"), "GET /models/{id}", 200)
    data = load_dataset(info["dataset"], seed=training_config().seed)
    accuracy = (info.get("baseline") or {}).get("accuracy")
    set_threads(threads)

    store = ArtifactStore(tempfile.mkdtemp(prefix="netreduce-bench-inprocess-"))

    def run(technique: str, params: dict) -> float:
        """The job's work, as the worker does it: run, then save each kept model with its ONNX export and
        onnxruntime figures (what a job stores), without the queue, the database or HTTP."""
        ctx = Context(data, model, spec, accuracy)
        t0 = time.perf_counter()
        results = Runner(ctx, latency_runs=latency_runs).run([Step(technique=technique, params=params)], model, spec)
        for r in results:
            if r.model is not None and not r.row.trial:
                name, _ = store.save(r.model, r.spec, "inprocess")
                recipe = [s.model_dump(mode="json") for s in r.row.recipe]
                calibration = calibration_for(recipe, r.row.seed, Settings().calibration_samples)
                add_onnx_figures(store, name, r.model, r.row.measurement, data, calibration, latency_runs)
        return time.perf_counter() - t0

    return run


def overhead(args: argparse.Namespace, svc: Service, client: httpx.Client) -> tuple[list[Target], str, Table]:
    console.print("[dim]service overhead: training mnist-cnn through POST /models ...[/]")
    model_id, train_s, train_job = train_through_service(client, svc, args.seed)
    console.print(f"[dim]    trained in {train_s:.1f} s (HTTP + queue + database)[/]")
    run_local = in_process_runner(client, model_id, train_job, args.threads, args.latency_runs)
    cold_s, _ = service_job(client, svc, model_id, *WARMUP_JOB)
    console.print(f"[dim]    warm-up job {WARMUP_JOB[0]}: {cold_s:.1f} s (worker loads base model + data once)[/]")
    poll_s = svc.broker_poll_s or Settings.model_fields["broker_poll_s"].default
    poll = "" if svc.stack == "real" else f", broker polling every {poll_s} s"
    t = Table(title=f"service overhead ({svc.stack} stack{poll}), {args.reps} alternating reps, medians")
    for c in ("job", "in-process s", "service s", "queued→started s", "started→finished s", "overhead s", "ratio"):
        t.add_column(c, justify="left" if c == "job" else "right")
    targets = []
    for technique, params in OVERHEAD_JOBS:
        local, remote, waits, runs = [], [], [], []
        for _ in range(args.reps):
            local.append(run_local(technique, params))
            wall, job = service_job(client, svc, model_id, technique, params)
            remote.append(wall)
            spans = _server_spans(job)
            if spans is not None:
                waits.append(spans[0])
                runs.append(spans[1])
        lo, re = statistics.median(local), statistics.median(remote)
        ratio = re / lo
        wait_s = f"{statistics.median(waits):.2f}" if waits else "—"
        run_s = f"{statistics.median(runs):.2f}" if runs else "—"
        name = f"{technique} {compact_params(params)}"
        t.add_row(name, f"{lo:.2f}", f"{re:.2f}", wait_s, run_s, f"{re - lo:+.2f}", f"{ratio:.2f}×")
        representative = technique == OVERHEAD_JOBS[0][0]
        what = f"service overhead, {technique} job" + ("" if representative else " (short job, diagnostic)")
        note = f"in-process {lo:.2f} s vs service {re:.2f} s (client-observed, poll 50 ms; queue wait {wait_s} s)"
        targets.append(Target("1", what, f"{ratio:.2f}×", "≤ 1.10×", ratio <= 1.10 if representative else None, note))
    return targets, model_id, t


# -- /comparison under load -------------------------------------------------------------------


def fill_comparison(svc: Service, client: httpx.Client, model_id: str, total: int, seed: int = 0) -> int:
    """Insert result rows through the store layer until /comparison returns ``total`` rows; returns
    how many were added. Copies of a real non-baseline row under a new succeeded job, figures varied."""
    from sqlalchemy import insert, select

    from store.db import create_engine
    from store.tables import BASELINE_TECHNIQUE, Job, ResultRow, utcnow

    have = len(_check(client.get("/comparison", params={"base_model_id": model_id}), "GET /comparison", 200))
    missing = total - have
    if missing <= 0:
        return 0
    engine = create_engine(svc.database_url)
    rng = random.Random(seed)
    try:
        with engine.begin() as conn:
            template = (
                conn.execute(
                    select(ResultRow.__table__).where(
                        ResultRow.base_model_id == model_id, ResultRow.technique != BASELINE_TECHNIQUE
                    )
                )
                .mappings()
                .first()
            )
            if template is None:
                raise ServiceError("no result row to copy: run the service-overhead jobs first")
            job_template = conn.execute(select(Job.__table__).where(Job.id == template["job_id"])).mappings().one()
            per_job = 50
            rows = []
            for j in range(math.ceil(missing / per_job)):
                job = {k: v for k, v in job_template.items() if k != "id"}
                now = utcnow()
                job.update(created_at=now, started_at=now, finished_at=now, updated_at=now, lease_token=None)
                job_id = conn.execute(insert(Job.__table__).values(**job)).inserted_primary_key[0]
                for i in range(min(per_job, missing - j * per_job)):
                    row = {k: v for k, v in template.items() if k != "id"}
                    scale = rng.uniform(0.05, 1.0)
                    row.update(
                        job_id=job_id,
                        row_index=i + 1,
                        label=f"{template['label']} #bench{j * per_job + i + 1}",
                        trial=False,
                        artifact_path=None,
                        accuracy=round((template["accuracy"] or 90.0) - rng.uniform(0, 5), 4),
                        accuracy_drop=round(rng.uniform(-0.5, 5), 4),
                        bytes=int((template["bytes"] or 1) * scale),
                        n_params=int((template["n_params"] or 1) * scale),
                        macs=int((template["macs"] or 1) * rng.uniform(0.05, 1.0)),
                        latency_ms_bs64=(template["latency_ms_bs64"] or 1.0) * rng.uniform(0.2, 1.2),
                        created_at=utcnow(),
                    )
                    row["ops"] = row["macs"]
                    row["flops"] = 2 * row["macs"]
                    rows.append(copy.deepcopy(row))
            conn.execute(insert(ResultRow.__table__), rows)
    finally:
        engine.dispose()
    return missing


async def _load(url: str, path: str, params: dict, clients: int, duration_s: float, max_requests: int) -> dict:
    """``clients`` independent httpx clients (one connection each) call ``path`` in a loop; every body is
    read in full (and decoded, if the server compressed it), not parsed. The objects of this process
    (torch, rich, ...: ~200,000) are frozen out of the garbage collector meanwhile: a full collection
    walking them paused every client for ~100 ms, once per run."""
    latencies: list[float] = []
    errors: list[str] = []
    sizes: set[int] = set()
    wire: set[tuple[int, str]] = set()
    stop_at = 0.0
    count = 0

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal count
        while time.perf_counter() < stop_at and count < max_requests:
            count += 1
            t0 = time.perf_counter()
            try:
                r = await client.get(path, params=params)
                body = r.content
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    latencies.append(dt)
                    sizes.add(len(body))
                    wire.add((r.num_bytes_downloaded, r.headers.get("content-encoding", "identity")))
                else:
                    errors.append(f"HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)

    # one pool per client, as separate clients would have: a shared pool checks all its idle connections
    # (a poll and a getpeername each) whenever any request starts or ends
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(10.0)
    gc.collect()
    gc.freeze()
    try:
        async with contextlib.AsyncExitStack() as stack:
            pool = [
                await stack.enter_async_context(httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout))
                for _ in range(clients)
            ]
            stop_at = time.perf_counter() + 1.0  # warm-up: connections opened, caches warm; not counted
            await asyncio.gather(*(client_loop(c) for c in pool))
            latencies.clear()
            errors.clear()
            count = 0
            t0 = time.perf_counter()
            stop_at = t0 + duration_s
            await asyncio.gather(*(client_loop(c) for c in pool))
            elapsed = time.perf_counter() - t0
    finally:
        gc.unfreeze()
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "bytes": sorted(sizes), "wire": sorted(wire)}


def profile_api(svc: Service, out: str, duration_s: float) -> subprocess.Popen | None:
    """py-spy (if installed) samples the uvicorn process during the load; raw collapsed stacks to ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        console.print("[yellow]--profile: py-spy is not installed (pip install py-spy)[/]")
        return None
    api = next(c for c in svc.children if c.name == "api")
    cmd = [spy, "record", "-p", str(api.popen.pid), "-d", str(math.ceil(duration_s)), "-f", "raw", "-o", out]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def percentile(values: list[float], q: float) -> float:
    ranked = sorted(values)
    return ranked[max(1, math.ceil(q / 100 * len(ranked))) - 1]


def comparison_load(args: argparse.Namespace, svc: Service, client: httpx.Client, model_id: str) -> list[Target]:
    added = fill_comparison(svc, client, model_id, COMPARISON_ROWS, args.seed)
    params = {"base_model_id": model_id}
    rows = _check(client.get("/comparison", params=params), "GET /comparison", 200)
    console.print(f"[dim]/comparison under load: {len(rows)} rows ({added} inserted through the store layer)[/]")
    serial = []
    for _ in range(5):
        t0 = time.perf_counter()
        r = client.get("/comparison", params=params)  # the whole body read (and decoded), not parsed
        serial.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise ServiceError(f"GET /comparison: HTTP {r.status_code} {r.text[:500]}")
    one_ms = 1000 * statistics.median(serial)
    spy = profile_api(svc, args.profile, args.load_s + 1.0) if args.profile else None
    res = asyncio.run(_load(svc.url, "/comparison", params, CLIENTS, args.load_s, MAX_REQUESTS))
    if spy is not None:
        spy.wait(timeout=60)
        console.print(f"[dim]py-spy profile of the API under load: {args.profile}[/]")
    lat, n = res["latencies"], len(res["latencies"])
    rps = n / res["elapsed"]
    p50 = 1000 * percentile(lat, 50) if lat else float("nan")
    p99 = 1000 * percentile(lat, 99) if lat else float("nan")
    size = res["bytes"][-1] if res["bytes"] else 0
    wire = ", ".join(f"{b:,} {encoding}" for b, encoding in res["wire"]) or "—"
    note = (
        f"{n} OK in {res['elapsed']:.1f} s, {len(res['errors'])} errors, {size:,} bytes/response ({wire} on the "
        f"wire), p50 {p50:.1f} ms, one request alone {one_ms:.1f} ms; client and server share the cores"
    )
    what = f"/comparison ({len(rows)} rows), {CLIENTS} clients"
    return [
        Target("6", f"{what}: throughput", f"{rps:.0f} req/s", "≥ 300 req/s", rps >= 300 and not res["errors"], note),
        Target("6", f"{what}: p99 latency", f"{p99:.1f} ms", "≤ 50 ms", p99 <= 50),
    ]


def run(args: argparse.Namespace) -> list[Target]:
    targets: list[Target] = []
    try:
        with (
            Service(args.stack, args.threads, args.latency_runs, args.broker_poll) as svc,
            httpx.Client(base_url=svc.url, timeout=60) as client,
        ):
            console.print(
                f"[dim]service at {svc.url} ({svc.stack}: {svc.database_url.split('?')[0]}, {svc.broker_url})[/]"
            )
            model_id = None
            if not args.skip_overhead:
                t1, model_id, table = overhead(args, svc, client)
                console.print(table)
                targets += t1
            else:
                model_id, _, _ = train_through_service(client, svc, args.seed)
                service_job(client, svc, model_id, *OVERHEAD_JOBS[1])
            targets += comparison_load(args, svc, client, model_id)
    except (ServiceError, httpx.HTTPError, OSError) as exc:
        text = str(exc)
        console.print(f"[red]service benchmark stopped:[/] {text[:3000]}")
        done = {t.item for t in targets}
        for item, what in (("1", "service overhead"), ("6", "/comparison under load")):
            if item not in done:
                targets.append(Target(item, what, "—", "", None, f"not measured: {text.splitlines()[0][:200]}"))
    return targets


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stack", choices=("embedded", "real"), default="embedded", help="SQLite + sqla broker, or Redis + PostgreSQL"
    )
    p.add_argument("--reps", type=int, default=3, help="alternating repetitions of each overhead job")
    p.add_argument("--load-s", type=float, default=10.0, help="seconds of /comparison load (after 1 s warm-up)")
    p.add_argument("--skip-overhead", action="store_true", help="only /comparison under load")
    p.add_argument(
        "--broker-poll",
        type=float,
        default=None,
        help="NETREDUCE_BROKER_POLL_S of the service (default: the setting's); no effect on --stack real",
    )
    p.add_argument("--profile", default="", help="py-spy the API during the /comparison load; raw stacks to this file")


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    add_args(p)
    args = p.parse_args()
    set_threads(args.threads)
    print_machine(machine_record(args.threads))
    targets = run(args)
    console.print(targets_table(targets, f"service ({args.stack} stack): overhead, /comparison under load"))
    print_target_lines(targets)


if __name__ == "__main__":
    main()
