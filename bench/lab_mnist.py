"""The whole lab on the big network: ``netreduce up --model mnist-cnn --dataset idx:<MNIST>`` (the default sweep
on MNIST, the real embedded stack: API + Celery worker processes), then a retime of every stored network, then
the table with intervals, significance and speedups from one measuring session, and the time per job.

Usage: python -m bench.lab_mnist [--data ../shared/data/mnist] [--port 8031] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
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

from bench.common import DEFAULT_DATA, ROOT, console, machine_record, print_machine  # noqa: E402
from compress.sweep import default_sweep  # noqa: E402

TERMINAL = {"succeeded", "failed", "cancelled"}


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "NETREDUCE_DATABASE_URL": f"sqlite:///{work}/netreduce.db",
        "NETREDUCE_BROKER_URL": f"sqla+sqlite:///{work}/broker.db",
        "NETREDUCE_ARTIFACT_DIR": str(work / "artifacts"),
        "NETREDUCE_WORK_DIR": str(work / "work"),
    }


def _wait(client: httpx.Client, what: str, ready: Any, timeout_s: float, poll_s: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            found = ready(client)
        except httpx.HTTPError:
            found = None
        if found:
            return found
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not done after {timeout_s:.0f} s")


def _model_id(client: httpx.Client) -> str | None:
    found = [m for m in client.get("/models").json() if m["architecture"] == "mnist-cnn"]
    return found[0]["id"] if found else None


def _sweep_done(client: httpx.Client, mid: str, expected: int) -> list[dict[str, Any]] | None:
    jobs = client.get("/jobs", params={"base_model_id": mid, "limit": 200}).json()["items"]
    compress = [j for j in jobs if j["kind"] == "compress"]
    if len(compress) >= expected and all(j["status"] in TERMINAL for j in jobs):
        return jobs
    return None


def _seconds(job: dict[str, Any]) -> float | None:
    from datetime import datetime

    if not job.get("started_at") or not job.get("finished_at"):
        return None
    start, end = (datetime.fromisoformat(job[k]) for k in ("started_at", "finished_at"))
    return (end - start).total_seconds()


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    t = Table(title="time per job (started → finished on the worker)")
    for c in ("job", "kind", "technique", "status", "s"):
        t.add_column(c, justify="right" if c in ("job", "s") else "left")
    for j in sorted(jobs, key=lambda j: j["id"]):
        s = _seconds(j)
        t.add_row(str(j["id"]), j["kind"], j["technique"], j["status"], "—" if s is None else f"{s:.1f}")
    return t


def lab_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="mnist-cnn: the lab's table after one retime (speedups: one measuring session)")
    cols = ("row", "acc % [95 % CI]", "drop", "p", "size", "ops", "ms bs1", "ms bs64", "× bs1", "× bs64", "ORT bs64")
    for c in cols:
        t.add_column(c, justify="left" if c == "row" else "right", overflow="fold")

    def f(v: Any, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    for r in rows:
        acc = f"{r['accuracy']:.2f} [{r['accuracy_ci_low']:.2f}, {r['accuracy_ci_high']:.2f}]"
        t.add_row(
            r["label"],
            acc,
            f(r["accuracy_drop"], "+.2f"),
            f(r["drop_p_value"], ".3f"),
            f(r["size_ratio"], ".3f"),
            f(r["ops_ratio"], ".3f"),
            f(r["latency_ms_bs1"], ".3f"),
            f(r["latency_ms_bs64"], ".2f"),
            f(r["speedup_bs1"], ".2f"),
            f(r["speedup_bs64"], ".2f"),
            f(r["ort_latency_ms_bs64"], ".2f"),
        )
    return t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="IDX folder of the MNIST split")
    p.add_argument("--port", type=int, default=8031)
    p.add_argument("--keep", default="", help="work folder to keep (default: a temporary one, removed)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds the sweep may take")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="netreduce-lab-mnist-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    from store.settings import get_settings

    print_machine(machine_record(get_settings().torch_threads), "machine (load average at the start)")
    cmd = [sys.executable, "-m", "cli.main", "up", "--model", "mnist-cnn", "--dataset", f"idx:{args.data}"]
    cmd += ["--port", str(args.port), "--log-dir", str(work / "logs")]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(work), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30) as client:
            mid = _wait(client, "the base model", _model_id, 180)
            expected = len(default_sweep(quick=True))
            jobs = _wait(client, "the sweep", lambda c: _sweep_done(c, mid, expected), args.timeout)
            sweep_s = time.monotonic() - t0
            console.print(jobs_table(jobs))
            console.print(f"sweep: {len(jobs)} jobs (training included) in {sweep_s:.0f} s wall time")
            t1 = time.monotonic()
            retime = client.post(f"/models/{mid}/retime").json()
            done = _wait(client, "the retime", lambda c: _finished(c, retime["id"]), 1800)
            console.print(f"retime: {done['status']} in {time.monotonic() - t1:.0f} s ({done['stage']})")
            rows = client.get("/comparison", params={"base_model_id": mid}).json()
            console.print(lab_table(rows))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    console.print(f"[dim]work folder: {work}[/dim]")
    print_machine(machine_record(get_settings().torch_threads), "machine (load average at the end)")


def _finished(client: httpx.Client, job_id: int) -> dict[str, Any] | None:
    job = client.get(f"/jobs/{job_id}").json()
    return job if job["status"] in TERMINAL else None


if __name__ == "__main__":
    main()
