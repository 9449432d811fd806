"""Load: many clients submit jobs at once to a running stack; nothing is lost or run twice.

C client threads (one HTTP connection each) post N jobs (one cheap technique on one base model) as
fast as the API takes them, while another thread reads ``/comparison`` the whole time. Then it waits
until every job is finished (bounded) and prints: submissions per second, p50/p99 latency of the
submissions and of the comparison reads, jobs accepted / unique / completed, and duplicates found
(a job id handed out twice, a job with more than one result row, a job claimed more than once).

Loopback only, and bounded in count and time. Start a stack first (``make run`` / ``netreduce up
--no-sweep``, or compose with its port on localhost), preferably with ``NETREDUCE_LATENCY_RUNS=1``.

Usage: python -m bench.load [--url http://127.0.0.1:8000] [--jobs 200] [--clients 20]
       [--technique quantize-dynamic] [--model digits-cnn] [--drain-timeout 300] [--token ...]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_JOBS, MAX_CLIENTS, MAX_DRAIN_S = 2000, 64, 1800
TERMINAL = {"succeeded", "failed", "cancelled"}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100, nearest rank) of ``values``; None when empty."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(1, math.ceil(q / 100 * len(ranked))) - 1]


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class LoadReport:
    jobs: int
    clients: int
    submit_s: float = 0.0
    accepted: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    """Answers other than 202 (status code or exception name) and how many."""
    job_ids: list[int] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    comparison_ms: list[float] = field(default_factory=list)
    comparison_errors: dict[str, int] = field(default_factory=dict)
    drain_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    duplicate_ids: int = 0
    rows_per_job: dict[int, int] = field(default_factory=dict)
    claimed_more_than_once: list[int] = field(default_factory=list)

    @property
    def submits_per_s(self) -> float:
        return self.accepted / self.submit_s if self.submit_s else 0.0

    @property
    def completed(self) -> int:
        return self.statuses.get("succeeded", 0)

    @property
    def duplicates(self) -> int:
        """Anything that happened twice: an id handed out twice, extra result rows, a second claim."""
        extra_rows = sum(n - 1 for n in self.rows_per_job.values() if n > 1)
        return self.duplicate_ids + extra_rows + len(self.claimed_more_than_once)

    def summary(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "clients": self.clients,
            "accepted": self.accepted,
            "refused": self.refused,
            "unique_ids": len(set(self.job_ids)),
            "submit_s": round(self.submit_s, 3),
            "submits_per_s": round(self.submits_per_s, 1),
            "submit_p50_ms": _round(percentile(self.submit_ms, 50)),
            "submit_p99_ms": _round(percentile(self.submit_ms, 99)),
            "comparison_reads": len(self.comparison_ms),
            "comparison_errors": self.comparison_errors,
            "comparison_p50_ms": _round(percentile(self.comparison_ms, 50)),
            "comparison_p99_ms": _round(percentile(self.comparison_ms, 99)),
            "drain_s": round(self.drain_s, 2),
            "statuses": self.statuses,
            "completed": self.completed,
            "pending": len(self.pending),
            "jobs_without_row": sum(1 for n in self.rows_per_job.values() if n == 0),
            "duplicates": self.duplicates,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def _submit(
    url: str, headers: dict[str, str], body: dict[str, Any], count: int, report: LoadReport, lock: threading.Lock
) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                r = client.post("/jobs", json=body)
                outcome = str(r.status_code)
            except httpx.HTTPError as exc:
                r, outcome = None, type(exc).__name__
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                report.submit_ms.append(ms)
                if r is not None and r.status_code == 202:
                    report.accepted += 1
                    report.job_ids.append(int(r.json()["id"]))
                else:
                    report.refused[outcome] = report.refused.get(outcome, 0) + 1


def _read_comparison(url: str, headers: dict[str, str], model: str, stop: threading.Event, report: LoadReport) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                r = client.get("/comparison", params={"base_model_id": model})
                outcome = None if r.status_code == 200 and isinstance(r.json(), list) else str(r.status_code)
            except (httpx.HTTPError, ValueError) as exc:
                outcome = type(exc).__name__
            report.comparison_ms.append((time.perf_counter() - t0) * 1000)
            if outcome:
                report.comparison_errors[outcome] = report.comparison_errors.get(outcome, 0) + 1
            stop.wait(0.05)


def _jobs_state(client: httpx.Client, ids: set[int], model: str, technique: str) -> dict[int, dict[str, Any]]:
    """The listed state of the jobs in ``ids`` (newest first, paged)."""
    found: dict[int, dict[str, Any]] = {}
    offset = 0
    while len(found) < len(ids):
        params: dict[str, Any] = {
            "base_model_id": model,
            "technique": technique,
            "kind": "compress",
            "limit": 500,
            "offset": offset,
        }
        page = client.get("/jobs", params=params).json()
        found.update({j["id"]: j for j in page["items"] if j["id"] in ids})
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break
    return found


def run_load(
    url: str,
    jobs: int = 200,
    clients: int = 20,
    model: str = "digits-cnn",
    technique: str = "quantize-dynamic",
    params: dict[str, Any] | None = None,
    token: str | None = None,
    drain_timeout_s: float = 300.0,
) -> LoadReport:
    """Submit ``jobs`` jobs from ``clients`` threads while reading /comparison, then wait for them to finish."""
    if not is_loopback(url):
        raise ValueError(f"{url} is not a loopback address: this load generator only targets this machine")
    if not (1 <= jobs <= MAX_JOBS and 1 <= clients <= MAX_CLIENTS and 0 < drain_timeout_s <= MAX_DRAIN_S):
        raise ValueError(f"bounds: 1-{MAX_JOBS} jobs, 1-{MAX_CLIENTS} clients, drain timeout up to {MAX_DRAIN_S} s")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"base_model_id": model, "technique": technique, "params": params or {}, "rerun": True}  # every post runs
    report = LoadReport(jobs=jobs, clients=clients)
    lock, stop = threading.Lock(), threading.Event()
    reader = threading.Thread(target=_read_comparison, args=(url, headers, model, stop, report), daemon=True)
    reader.start()
    shares = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]
    senders = [
        threading.Thread(target=_submit, args=(url, headers, body, n, report, lock), daemon=True) for n in shares
    ]
    t0 = time.perf_counter()
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    report.submit_s = time.perf_counter() - t0
    report.duplicate_ids = len(report.job_ids) - len(set(report.job_ids))

    ids = set(report.job_ids)
    state: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + drain_timeout_s
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        while True:
            state = _jobs_state(client, ids, model, technique)
            if all(j["status"] in TERMINAL for j in state.values()) and len(state) == len(ids):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        report.drain_s = time.perf_counter() - t0 - report.submit_s
        stop.set()
        reader.join(timeout=60)
        report.statuses = dict(Counter(j["status"] for j in state.values()))
        report.pending = sorted(ids - {i for i, j in state.items() if j["status"] in TERMINAL})
        report.claimed_more_than_once = sorted(i for i, j in state.items() if j["attempts"] > 1)
        rows = client.get("/comparison", params={"base_model_id": model}).json()
    # A job that had to train the base model first also wrote its baseline row: that one is the model's.
    per_job = Counter(r["job_id"] for r in rows if r["job_id"] in ids and r["technique"] != "baseline")
    report.rows_per_job = {
        i: per_job.get(i, 0) for i in sorted(ids) if state.get(i, {}).get("status") == "succeeded" or i in per_job
    }
    return report


def print_report(report: LoadReport) -> None:
    from rich.console import Console
    from rich.table import Table

    s = report.summary()
    t = Table(title=f"load: {report.jobs} submissions from {report.clients} concurrent clients")
    t.add_column("what")
    t.add_column("value", justify="right")
    rows = [
        ("submissions accepted (202)", f"{s['accepted']} of {s['jobs']}"),
        ("refused / failed requests", json.dumps(s["refused"]) if s["refused"] else "0"),
        ("unique job ids", s["unique_ids"]),
        ("submit phase", f"{s['submit_s']} s"),
        ("requests/s (submissions)", s["submits_per_s"]),
        ("submit latency p50 / p99", f"{s['submit_p50_ms']} / {s['submit_p99_ms']} ms"),
        ("/comparison reads during the run", s["comparison_reads"]),
        ("/comparison errors", json.dumps(s["comparison_errors"]) if s["comparison_errors"] else "0"),
        ("/comparison latency p50 / p99", f"{s['comparison_p50_ms']} / {s['comparison_p99_ms']} ms"),
        ("drain after the last submission", f"{s['drain_s']} s"),
        ("jobs completed (succeeded)", s["completed"]),
        ("job states", json.dumps(s["statuses"])),
        ("still pending at the timeout", s["pending"]),
        ("succeeded jobs without a row", s["jobs_without_row"]),
        ("duplicates found", s["duplicates"]),
    ]
    for k, v in rows:
        t.add_row(k, str(v))
    Console(width=120).print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="API base URL (loopback only)")
    p.add_argument("--jobs", type=int, default=200, help=f"submissions (at most {MAX_JOBS})")
    p.add_argument("--clients", type=int, default=20, help=f"concurrent clients (at most {MAX_CLIENTS})")
    p.add_argument("--model", default="digits-cnn", help="base model id")
    p.add_argument("--technique", default="quantize-dynamic", help="a cheap technique keeps the drain short")
    p.add_argument("--params", default="{}", help="the technique's params as JSON")
    p.add_argument("--drain-timeout", type=float, default=300.0, help=f"seconds (at most {MAX_DRAIN_S})")
    p.add_argument("--token", default=os.environ.get("NETREDUCE_API_TOKEN"), help="bearer token, if the API has one")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    args = p.parse_args(argv)
    try:
        report = run_load(
            args.url,
            args.jobs,
            args.clients,
            args.model,
            args.technique,
            json.loads(args.params),
            args.token,
            args.drain_timeout,
        )
    except (ValueError, httpx.HTTPError) as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**report.summary(), "job_ids": report.job_ids}, indent=2))
    else:
        print_report(report)
    ok = report.accepted == report.jobs and report.completed == report.jobs and report.duplicates == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
