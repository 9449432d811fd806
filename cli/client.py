"""``netreduce submit | status | comparison | recommend``: a client of a running API (``--url``).

Thin over HTTP (httpx): every decision is the server's; this module only sends requests, waits with a
progress bar, and prints tables. An HTTP error prints the server's ``detail`` and exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from compress.result_columns import TERMINAL_COLUMNS, columns, format_value

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_MODEL = "digits-cnn"
TERMINAL = {"succeeded", "failed", "cancelled"}
COMPARISON_COLUMNS = columns(TERMINAL_COLUMNS)
"""The dashboard's columns that fit a terminal."""


class ClientError(Exception):
    """A request failed; the message is what the user reads."""


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=160)


def _detail_text(detail: Any) -> str:
    """FastAPI's ``detail``: a string, or a list of {loc, msg, accepted/valid...} made one line each."""
    if isinstance(detail, list):
        lines = []
        for d in detail:
            if not isinstance(d, dict):
                lines.append(str(d))
                continue
            loc = ".".join(str(p) for p in d.get("loc", []) if p not in ("body", "query"))
            extra = [f"{k}: {json.dumps(d[k])}" for k in ("accepted", "valid") if d.get(k)]
            lines.append(
                f"{loc + ': ' if loc else ''}{d.get('msg', d)}{' (' + '; '.join(extra) + ')' if extra else ''}"
            )
        return "\n  ".join(lines)
    return str(detail)


def auth_headers(token: str | None) -> dict[str, str]:
    """The bearer header for a token (``--token`` or ``NETREDUCE_API_TOKEN``); none without one."""
    token = token or os.environ.get("NETREDUCE_API_TOKEN") or ""
    return {"Authorization": f"Bearer {token.strip()}"} if token.strip() else {}


def request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Send a request; connection problems and error statuses become a ClientError with the server's detail."""
    try:
        r = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ClientError(
            f"cannot reach the API at {client.base_url} ({type(exc).__name__}: {exc}); is `netreduce up` running?"
        ) from None
    if r.status_code >= 400:
        try:
            detail = _detail_text(r.json().get("detail", r.text))
        except ValueError:
            detail = r.text[:500]
        hint = " (pass --token or set NETREDUCE_API_TOKEN)" if r.status_code == 401 else ""
        raise ClientError(f"{method} {path} → HTTP {r.status_code}: {detail}{hint}")
    return r


def job_table(jobs: list[dict[str, Any]]) -> Table:
    t = Table(title="jobs (newest first)")
    for c in ("id", "technique", "model", "status", "progress", "stage / error"):
        t.add_column(c, justify="right" if c in ("id", "progress") else "left", overflow="fold")
    for j in jobs:
        t.add_row(
            str(j["id"]),
            j["technique"],
            j["base_model_id"],
            j["status"],
            f"{100 * (j.get('progress') or 0):.0f} %",
            (j.get("error") or j.get("stage") or "")[:80],
        )
    return t


def rows_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for c in COMPARISON_COLUMNS:
        t.add_column(c.heading, justify="left" if c.name in ("label", "pareto") else "right", overflow="fold")
    for r in rows:
        t.add_row(*[format_value(r.get(c.name), c.kind) for c in COMPARISON_COLUMNS])
    return t


def wait_for_job(client: httpx.Client, job: dict[str, Any], poll_s: float, console: Console) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job is finished, with a progress bar (on stderr)."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[stage]}"), console=console, transient=False) as bars:
        task = bars.add_task(f"job {job['id']} {job['technique']}", total=1.0, stage=job["status"])
        while True:
            job = request(client, "GET", f"/jobs/{job['id']}").json()
            stage = (job.get("error") or job.get("stage") or "")[:60]
            bars.update(task, completed=job.get("progress") or 0.0, stage=f"{job['status']}: {stage}")
            if job["status"] in TERMINAL:
                return job
            time.sleep(poll_s)


def succeeded(job: dict[str, Any], out: Console) -> bool:
    """Whether the finished job succeeded; when not, its status and why, in red."""
    if job["status"] == "succeeded":
        return True
    out.print(f"[red]job {job['id']} {job['status']}: {job.get('error') or job.get('stage') or ''}[/red]")
    return False


def cmd_submit(args: argparse.Namespace, client: httpx.Client) -> int:
    try:
        params = json.loads(args.params) if args.params else {}
    except json.JSONDecodeError as exc:
        raise ClientError(f"--params is not valid JSON ({exc}); e.g. --params '{{\"amount\": 0.5}}'") from None
    if not isinstance(params, dict):
        raise ClientError("--params must be a JSON object, e.g. --params '{\"amount\": 0.5}'")
    body = {"base_model_id": args.model, "technique": args.technique, "params": params}
    job = request(client, "POST", "/jobs", json=body).json()
    out = _console()
    out.print(f"job {job['id']} queued: {job['technique']} on {job['base_model_id']} ({args.url}/jobs/{job['id']})")
    if not args.wait:
        return 0
    job = wait_for_job(client, job, args.poll, _console(stderr=True))
    if not succeeded(job, out):
        return 1
    rows = job.get("rows") or []
    out.print(f"job {job['id']} succeeded: {len(rows)} row(s)")
    if rows:
        out.print(rows_table(rows, f"job {job['id']}"))
    return 0


def cmd_status(args: argparse.Namespace, client: httpx.Client) -> int:
    out = _console()
    if args.job_id is None:
        page = request(client, "GET", "/jobs", params={"limit": args.limit}).json()
        out.print(job_table(page["items"]))
        out.print(f"{len(page['items'])} of {page['total']} job(s)")
        return 0
    job = request(client, "GET", f"/jobs/{args.job_id}").json()
    out.print(job_table([job]))
    if job.get("error"):
        out.print(f"[red]error:[/red] {job['error']}")
    if job.get("rows"):
        out.print(rows_table(job["rows"], f"job {job['id']}: rows"))
    return 0


def cmd_comparison(args: argparse.Namespace, client: httpx.Client) -> int:
    params = {"base_model_id": args.model, "include_trials": str(args.include_trials).lower()}
    if args.csv:
        sys.stdout.write(request(client, "GET", "/comparison", params={**params, "format": "csv"}).text)
        return 0
    rows = request(client, "GET", "/comparison", params=params).json()
    out = _console()
    if not rows:
        out.print(f"no rows yet for '{args.model}': the baseline row appears once the model is trained")
        return 0
    out.print(rows_table(rows, f"comparison: {args.model}"))
    out.print("★ = on the Pareto front (accuracy ↑, bytes ↓, ops ↓, latency ↓)")
    return 0


def cmd_recommend(args: argparse.Namespace, client: httpx.Client) -> int:
    params = {"base_model_id": args.model, "max_accuracy_drop": args.budget, "priority": args.priority}
    rec = request(client, "GET", "/recommendation", params=params).json()
    out = _console()
    chosen = rec.get("chosen")
    out.print(f"[bold]Keep:[/bold] {chosen['label']}" if chosen else "[bold]No row qualifies.[/bold]")
    out.print(rec["message"])
    out.print(f"[dim]constraint:[/dim] {rec['constraint']}")
    if rec.get("score_formula"):
        out.print(f"[dim]score:[/dim] {rec['score_formula']}")
    if rec.get("trade_off"):
        out.print(f"[dim]trade-off:[/dim] {rec['trade_off']['text']}")
    for e in rec.get("excluded", []):
        out.print(f"[dim]excluded:[/dim] {e['row']['label']}: {e['detail']}")
    return 0


def cmd_export(args: argparse.Namespace, client: httpx.Client) -> int:
    params: dict[str, Any] = {"format": args.format}
    if args.row is not None:
        params["row_index"] = args.row
    body = request(client, "GET", f"/jobs/{args.job_id}/artifact", params=params).content
    target = args.output or f"job-{args.job_id}{'' if args.row is None else f'-row-{args.row}'}.{args.format}"
    with open(target, "wb") as f:
        f.write(body)
    _console(stderr=True).print(f"wrote {target} ({len(body):,} bytes, {args.format})")
    return 0


def cmd_report(args: argparse.Namespace, client: httpx.Client) -> int:
    params = {"base_model_id": args.model, "format": args.format, "max_accuracy_drop": args.budget}
    text = request(client, "GET", "/comparison/report", params=params).text
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        _console(stderr=True).print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_retime(args: argparse.Namespace, client: httpx.Client) -> int:
    job = request(client, "POST", f"/models/{args.model}/retime").json()
    out = _console()
    out.print(f"queued retime job {job['id']} for '{args.model}'")
    if not args.wait:
        return 0
    job = wait_for_job(client, job, args.poll, _console(stderr=True))
    if not succeeded(job, out):
        return 1
    out.print(f"job {job['id']}: {job.get('stage')} (session {(job.get('notes') or {}).get('session_id')})")
    return 0


COMMANDS = {
    "submit": cmd_submit,
    "status": cmd_status,
    "comparison": cmd_comparison,
    "recommend": cmd_recommend,
    "export": cmd_export,
    "report": cmd_report,
    "retime": cmd_retime,
}


def run_client(args: argparse.Namespace) -> int:
    with httpx.Client(base_url=args.url, timeout=args.timeout, headers=auth_headers(args.token)) as client:
        try:
            return COMMANDS[args.command](args, client)
        except ClientError as exc:
            print(f"netreduce: error: {exc}", file=sys.stderr)
            return 1


def add_parsers(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=DEFAULT_URL, help=f"API base URL (default {DEFAULT_URL})")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    common.add_argument(
        "--token",
        default=None,
        help="the API's bearer token (default: $NETREDUCE_API_TOKEN; needed to submit when set)",
    )

    p = sub.add_parser("submit", parents=[common], help="queue a compression job on a running API")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model id (default {DEFAULT_MODEL})")
    p.add_argument("--technique", required=True, help="GET /techniques lists them")
    p.add_argument("--params", default=None, help="the technique's params as JSON, e.g. '{\"amount\": 0.5}'")
    p.add_argument("--wait", action="store_true", help="show progress until the job finishes, then its rows")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between progress checks")
    p.set_defaults(func=run_client)

    p = sub.add_parser("status", parents=[common], help="one job (with its rows), or the latest jobs")
    p.add_argument("job_id", nargs="?", type=int, default=None)
    p.add_argument("--limit", type=int, default=20, help="jobs listed without JOB_ID")
    p.set_defaults(func=run_client)

    p = sub.add_parser("comparison", parents=[common], help="the comparison table of a base model")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model id (default {DEFAULT_MODEL})")
    p.add_argument("--csv", action="store_true", help="print the CSV (every column) instead of a table")
    p.add_argument("--include-trials", action="store_true", help="also the search trials")
    p.set_defaults(func=run_client)

    p = sub.add_parser("recommend", parents=[common], help="which row to keep, and why")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model id (default {DEFAULT_MODEL})")
    p.add_argument("--budget", type=float, default=1.0, help="largest accuracy drop accepted, in points")
    p.add_argument("--priority", choices=("size", "ops", "latency", "ort-latency", "balanced"), default="size")
    p.set_defaults(func=run_client)

    p = sub.add_parser("export", parents=[common], help="download a job's model (ONNX for onnxruntime, or safetensors)")
    p.add_argument("job_id", type=int)
    p.add_argument("--row", type=int, default=None, help="row index (default: the job's kept variant)")
    p.add_argument("--format", choices=("onnx", "safetensors"), default="onnx")
    p.add_argument("-o", "--output", default=None, help="file to write (default job-ID[-row-N].FORMAT)")
    p.set_defaults(func=run_client)

    p = sub.add_parser("report", parents=[common], help="the write-up: table, recommendation, plot (md or html)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model id (default {DEFAULT_MODEL})")
    p.add_argument("--format", choices=("md", "html"), default="md")
    p.add_argument("--budget", type=float, default=1.0, help="largest accuracy drop accepted, in points")
    p.add_argument("-o", "--output", default=None, help="file to write (default: standard output)")
    p.set_defaults(func=run_client)

    p = sub.add_parser("retime", parents=[common], help="time every stored network of a model again, together")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"base model id (default {DEFAULT_MODEL})")
    p.add_argument("--wait", action="store_true", help="show progress until the retime finishes")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between progress checks")
    p.set_defaults(func=run_client)
