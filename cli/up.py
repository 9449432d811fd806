"""``netreduce up``: the embedded single-machine default, no Docker and no Redis.

Migrates the SQLite database, starts the API (uvicorn) and a real Celery worker process (prefork,
concurrency 1) on kombu's server-less SQLAlchemy broker, waits for /healthz, submits the default
sweep for the preset model over HTTP, shows progress, prints the comparison table, and keeps the API
serving until Ctrl-C (or SIGTERM), which cancels this run's unfinished jobs and stops both children.

The worker is supervised (:class:`WorkerSupervisor`): when it dies (a crash, an out-of-memory kill,
``kill -9``) the API keeps serving, the worker is started again after a backoff (1, 2, 4 ... 30 s),
and the job it was running is handed back to the queue as soon as no heartbeat can still be on its
way; ``--max-crashes`` deaths within ``--crash-window`` seconds stop ``netreduce up`` with a clear
message instead of restarting forever. The API dying still stops the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.client import auth_headers, rows_table

TERMINAL = {"succeeded", "failed", "cancelled"}
PRESET = "digits-cnn"


class Child:
    """A child process in its own session (so the terminal's Ctrl-C reaches only us) logging to a file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.log_path = name, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            with self.log_path.open(errors="replace") as f:
                return "".join(deque(f, maxlen=n))
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace_s: float) -> None:
        """SIGTERM the child (a warm shutdown), wait, then SIGKILL its whole process group (no orphans)."""
        if self.alive():
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace_s)
        self.signal_group(signal.SIGKILL)  # prefork children too, even after the parent exited
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._log.close()


def describe_exit(code: int | None) -> str:
    """``-9`` -> ``killed by SIGKILL``; a positive code stays a code."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def hand_back_orphans(crashed_at: float) -> list[int]:
    """Put back in the queue the ``running`` jobs whose last heartbeat is older than ``crashed_at``.

    Called once a heartbeat interval (plus a second) has passed since the worker died: a job whose
    heartbeat is still older than the death has no live worker (a live one would have stamped it
    since), so the reaper's own transition (``reap_stale``, lease cleared, id sent again, attempt
    counted) applies now instead of after ``stale_after_s``.
    """
    from store.db import create_engine
    from store.settings import get_settings
    from worker.celery_app import enqueue_job
    from worker.reaper import reap_stale

    settings = get_settings()
    stale = settings.model_copy(update={"stale_after_s": max(time.time() - crashed_at, 0.0)})
    engine = create_engine(settings.database_url)
    try:
        report = reap_stale(engine, stale, enqueue_job)
    finally:
        engine.dispose()
    return report.requeued + report.failed + report.cancelled


class WorkerSupervisor:
    """Restarts the worker when it dies, with backoff; gives up after too many deaths in a window."""

    def __init__(
        self,
        start: Any,
        console: Console,
        max_crashes: int = 5,
        window_s: float = 60.0,
        heartbeat_interval_s: float = 10.0,
        hand_back: Any = hand_back_orphans,
    ) -> None:
        self._start, self.console = start, console
        self.max_crashes, self.window_s = max_crashes, window_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._hand_back = hand_back
        self.worker: Child = start()
        self.crashes: deque[float] = deque()
        self.restarts = 0
        self._restart_at: float | None = None
        self._hand_back_at: list[tuple[float, float]] = []  # (monotonic due, wall-clock time of death)

    def check(self) -> None:
        """Call often: notices a death, restarts when the backoff is over, hands jobs back when due."""
        now = time.monotonic()
        if self._restart_at is None and not self.worker.alive():
            self._died(now)
        if self._restart_at is not None and now >= self._restart_at:
            self._restart_at = None
            self.worker = self._start()
            self.restarts += 1
            pid = self.worker.proc.pid
            self.console.print(f"[yellow]worker restarted (pid {pid}, restart {self.restarts})[/yellow]")
        for item in [i for i in self._hand_back_at if now >= i[0]]:
            self._hand_back_at.remove(item)
            try:
                ids = self._hand_back(item[1])
            except Exception as exc:  # the database may be busy; the worker's own reaper catches up later
                self.console.print(f"[red]could not hand back the lost worker's job(s): {exc}[/red]")
                continue
            if ids:
                self.console.print(f"[yellow]job(s) {', '.join(map(str, ids))} of the lost worker handed back[/yellow]")

    def _died(self, now: float) -> None:
        code = self.worker.proc.returncode
        self.worker.stop(grace_s=0)  # the prefork pool child too: nothing of the old worker keeps running
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > self.window_s:
            self.crashes.popleft()
        self._hand_back_at.append((now + self.heartbeat_interval_s + 1.0, time.time()))
        if len(self.crashes) >= self.max_crashes:
            raise RuntimeError(
                f"the worker died {len(self.crashes)} times within {self.window_s:.0f} s "
                f"(last: {describe_exit(code)}); not restarting it again. "
                f"Its log ({self.worker.log_path}) ends with:\n{self.worker.tail()}"
            )
        delay = min(2.0 ** (len(self.crashes) - 1), 30.0)
        self._restart_at = now + delay
        self.console.print(
            f"[yellow]worker {describe_exit(code)}; restarting it in {delay:.0f} s "
            f"(death {len(self.crashes)} of {self.max_crashes} allowed within {self.window_s:.0f} s)[/yellow]"
        )


def check_alive(api: Child, supervisor: WorkerSupervisor) -> None:
    """The API dying ends the run; the worker dying is the supervisor's business."""
    if not api.alive():
        raise RuntimeError(f"{api.name} exited with code {api.proc.returncode}:\n{api.tail()}")
    supervisor.check()


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (otherwise /healthz would answer for another server)."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_healthy(client: httpx.Client, children: list[Child], timeout_s: float, check: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if check is not None:
            check()
        for c in children:
            if not c.alive():
                raise RuntimeError(f"{c.name} exited with code {c.proc.returncode}:\n{c.tail()}")
        try:
            r = client.get("/healthz", timeout=3)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise RuntimeError(f"the API did not become healthy in {timeout_s:.0f} s: {last}")


def submit_sweep(
    client: httpx.Client, console: Console, base_model_id: str, quick: bool, again: bool = False
) -> dict[int, str]:
    """Post the sweep's jobs; a recipe (technique + params) that already succeeded (a previous run) is not
    posted again."""
    from compress.sweep import default_sweep

    def recipe(steps: Any) -> str:
        return json.dumps(steps, sort_keys=True)

    done: set[str] = set()
    if not again:
        page = client.get(
            "/jobs", params={"base_model_id": base_model_id, "status": "succeeded", "kind": "compress", "limit": 500}
        ).json()
        done = {recipe(j["steps"]) for j in page.get("items", [])}
    jobs: dict[int, str] = {}
    skipped: list[str] = []
    for item in default_sweep(quick=quick):
        if recipe([{"technique": item["technique"], "params": item["params"]}]) in done:
            skipped.append(item["technique"])
            continue
        r = client.post("/jobs", json={"base_model_id": base_model_id, **item, **({"rerun": True} if again else {})})
        if r.status_code == 202:
            jobs[int(r.json()["id"])] = item["technique"]
        else:
            console.print(f"[yellow]skipped {item['technique']}: {r.status_code} {r.text[:300]}[/yellow]")
    if skipped:
        console.print(f"already in the table from an earlier run: {', '.join(skipped)} (--again reruns them)")
    return jobs


def ensure_model(client: httpx.Client, console: Console, architecture: str, dataset: str) -> str:
    """The base model of ``architecture`` trained on ``dataset``: an existing one, else created here (trained by
    its own job with the architecture's default training; the sweep's jobs wait for it)."""
    from compress.architectures import get_architecture

    for m in client.get("/models", timeout=30).json():
        if m["architecture"] == architecture and m["dataset"] == dataset and m["status"] != "failed":
            console.print(f"base model '{m['id']}': {architecture} on {dataset} ({m['status']})")
            return str(m["id"])
    body = {
        "name": f"{architecture} lab",
        "architecture": architecture,
        "dataset": dataset,
        "training": get_architecture(architecture).training,
    }
    r = client.post("/models", json=body, timeout=60)
    if r.status_code != 202:
        raise RuntimeError(f"cannot create a base model of {architecture} on {dataset}: {r.status_code} {r.text[:500]}")
    console.print(
        f"base model '{r.json()['id']}': {architecture} on {dataset}, training (job {r.json()['training_job_id']})"
    )
    return str(r.json()["id"])


def follow(client: httpx.Client, console: Console, jobs: dict[int, str], check: Any) -> dict[int, Any]:
    """Show one progress bar per job until every job is finished."""
    final: dict[int, Any] = {}
    columns = (TextColumn("{task.description:<18}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[stage]}"), console=console) as bars:
        tasks = {jid: bars.add_task(f"#{jid} {name}", total=1.0, stage="queued") for jid, name in jobs.items()}
        while len(final) < len(jobs):
            check()
            for jid in jobs:
                if jid in final:
                    continue
                try:
                    job = client.get(f"/jobs/{jid}", timeout=10).json()
                except (httpx.HTTPError, ValueError):
                    continue
                stage = (job.get("error") or job.get("stage") or job["status"])[:70]
                bars.update(tasks[jid], completed=job.get("progress") or 0.0, stage=f"{job['status']}: {stage}")
                if job["status"] in TERMINAL:
                    final[jid] = job
            time.sleep(1.0)
    return final


def comparison_table(rows: list[dict[str, Any]], base_model_id: str) -> Table:
    return rows_table(rows, f"comparison: {base_model_id}")


def cancel_unfinished(client: httpx.Client, jobs: dict[int, str], final: dict[int, Any]) -> None:
    for jid in jobs:
        if jid not in final:
            with contextlib.suppress(httpx.HTTPError):
                client.delete(f"/jobs/{jid}", timeout=3)


def cmd_up(args: argparse.Namespace) -> int:
    from store.migrate import upgrade_head
    from store.settings import get_settings

    console = Console() if sys.stdout.isatty() else Console(width=160)
    settings = get_settings()
    log_dir = Path(args.log_dir)
    if not port_free(args.host, args.port):
        console.print(f"[red]netreduce up: {args.host}:{args.port} is already in use; pick another with --port[/red]")
        return 1
    console.print(f"[bold]netreduce up[/bold]: database {settings.database_url}, broker {settings.broker_url}")
    upgrade_head(settings.database_url)
    console.print("database migrated (alembic upgrade head)")

    env = dict(os.environ)
    py = sys.executable
    api_cmd = [py, "-m", "uvicorn", "api.main:app", "--host", args.host, "--port", str(args.port), "--log-level"]
    api_cmd.append("warning")
    worker_cmd = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool=prefork", "--concurrency=1"]
    worker_cmd += ["-Q", settings.queue, "--loglevel=INFO", "--without-gossip", "--without-mingle"]
    children: list[Child] = []
    jobs: dict[int, str] = {}
    final: dict[int, Any] = {}
    old = {s: signal.signal(s, _raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    base_url = f"http://{args.host}:{args.port}"
    client = httpx.Client(base_url=base_url, timeout=30, headers=auth_headers(settings.api_token))
    code = 0
    try:
        api = Child("api", api_cmd, log_dir / "api.log", env)
        children.append(api)

        def start_worker() -> Child:
            worker = Child("worker", worker_cmd, log_dir / "worker.log", env)
            children[1:] = [worker]
            return worker

        supervisor = WorkerSupervisor(
            start_worker,
            console,
            max_crashes=args.max_crashes,
            window_s=args.crash_window,
            heartbeat_interval_s=settings.heartbeat_interval_s,
        )
        wait_healthy(client, [api], args.start_timeout, supervisor.check)
        console.print(f"API at {base_url} (docs: {base_url}/docs); logs in {log_dir}/")
        if args.dataset:
            args.model = ensure_model(client, console, args.model, args.dataset)
        if not args.no_sweep:
            started = time.monotonic()
            jobs = submit_sweep(client, console, args.model, quick=not args.full, again=args.again)
            console.print(f"submitted {len(jobs)} job(s) for base model '{args.model}'")
            final = follow(client, console, jobs, lambda: check_alive(api, supervisor))
            for jid, job in sorted(final.items()):
                if job["status"] != "succeeded":
                    console.print(f"[red]job {jid} ({jobs[jid]}) {job['status']}: {job.get('error')}[/red]")
            rows = client.get("/comparison", params={"base_model_id": args.model}).json()
            console.print(comparison_table(rows, args.model))
            console.print(f"CSV: {base_url}/comparison?base_model_id={args.model}&format=csv")
            console.print(f"sweep: {len(jobs)} job(s) in {time.monotonic() - started:.0f} s")
            if args.exit:
                return code
        console.print(f"[green]serving at {base_url}[/green] (docs: {base_url}/docs); Ctrl-C stops")
        while True:
            check_alive(api, supervisor)
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("\nstopping ...")
    except (RuntimeError, httpx.HTTPError) as exc:
        console.print(f"[red]netreduce up: {exc}[/red]")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        try:
            if any(c.alive() for c in children):
                cancel_unfinished(client, jobs, final)
            for c in reversed(children):  # the worker first: it finishes or cancels its job
                c.stop(grace_s=args.stop_timeout)
        finally:
            client.close()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for s, handler in old.items():
                signal.signal(s, handler)
        console.print("stopped")
    return code


def add_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="run the service on this machine (SQLite + server-less broker) and the sweep")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-sweep", action="store_true", help="only start the API and the worker")
    p.add_argument("--full", action="store_true", help="the full sweep (longer fine-tuning) instead of the quick one")
    p.add_argument("--again", action="store_true", help="rerun sweep techniques that already succeeded")
    p.add_argument(
        "--model",
        default=PRESET,
        help="base model id the sweep runs on; with --dataset, an architecture (GET /architectures)",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="run the sweep on ARCHITECTURE (--model) trained on this data set, e.g. idx:../shared/data/mnist or "
        "mnist (torchvision's download only with NETREDUCE_ALLOW_DOWNLOAD=true); created once, reused after",
    )
    p.add_argument("--exit", action="store_true", help="stop once the sweep's table is printed (for benchmarks)")
    p.add_argument("--log-dir", default="var/logs")
    p.add_argument("--start-timeout", type=float, default=90.0, help="seconds to wait for /healthz")
    p.add_argument("--stop-timeout", type=float, default=15.0, help="seconds each child gets to stop")
    p.add_argument("--max-crashes", type=int, default=5, help="worker deaths within --crash-window that stop the run")
    p.add_argument("--crash-window", type=float, default=60.0, help="seconds (see --max-crashes)")
    p.set_defaults(func=cmd_up)
