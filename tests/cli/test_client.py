"""``netreduce submit | status | comparison | recommend`` against a real HTTP server.

The API app runs under uvicorn in a thread on a free port, over a migrated SQLite file. The enqueue
step is replaced by a recorder that plays the worker's part in a thread (running, progress, then a
result row and succeeded; ``quantize-dynamic`` fails), so ``--wait`` sees a job move.
"""

from __future__ import annotations

import csv
import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.deps import get_broker_check, get_enqueuer
from api.main import create_app
from cli.main import main
from store.db import get_session
from store.settings import Settings, get_settings
from store.tables import BaseModelRow, Job, utcnow
from tests.api.seed import add_job, add_model, add_row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeWorker:
    """Records enqueued ids and moves each job along in a thread, the way the worker writes it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: list[int] = []
        self.threads: list[threading.Thread] = []

    def __call__(self, job_id: int) -> None:
        self.ids.append(job_id)
        t = threading.Thread(target=self._run, args=(job_id,), daemon=True)
        self.threads.append(t)
        t.start()

    def _set(self, job_id: int, **values: object) -> Job:
        with Session(self.engine) as s:
            job = s.get(Job, job_id)
            assert job is not None
            for k, v in values.items():
                setattr(job, k, v)
            s.add(job)
            s.commit()
            s.refresh(job)
            return job

    def _run(self, job_id: int) -> None:
        time.sleep(0.2)
        job = self._set(job_id, status="running", progress=0.4, stage="fine-tune: epoch 1/2", started_at=utcnow())
        time.sleep(0.3)
        if job.technique == "quantize-dynamic":
            self._set(job_id, status="failed", error="no Linear layer to quantize (test)", finished_at=utcnow())
            return
        label = f"{job.technique} (cli test)"
        add_row(self.engine, job_id, job.base_model_id, 1, label=label, technique=job.technique, bytes=2000)
        self._set(job_id, status="succeeded", progress=1.0, stage="done: 1 row(s)", finished_at=utcnow())


Server = tuple[str, FakeWorker]


def server_engine(server: Server) -> Engine:
    return server[1].engine


Capture = pytest.CaptureFixture[str]


@pytest.fixture(scope="module")
def server(engine: Engine, settings: Settings) -> Iterator[Server]:
    worker = FakeWorker(engine)
    app = create_app()

    def session() -> Iterator[Session]:
        with Session(engine) as s:
            yield s

    app.dependency_overrides[get_session] = session
    app.dependency_overrides[get_settings] = lambda: settings
    app.dependency_overrides[get_enqueuer] = lambda: worker
    app.dependency_overrides[get_broker_check] = lambda: lambda url: None
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", worker
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def model(engine: Engine) -> str:
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    add_row(engine, train, mid, 0, label="baseline", bytes=4000, accuracy=95.0)
    job = add_job(engine, mid, technique="quantize-int8")
    add_row(engine, job, mid, 0, label="quantize-int8 (seeded)", technique="quantize-int8", bytes=1000,
            accuracy=94.6, accuracy_drop=0.4)  # fmt: skip
    return mid


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_wait_shows_progress_and_rows(server: Server, model: str, capsys: Capture) -> None:
    url, worker = server
    code, out, err = run(
        capsys, "submit", "--url", url, "--model", model, "--technique", "prune-l1",
        "--params", '{"amount": 0.3}', "--wait", "--poll", "0.1",
    )  # fmt: skip
    assert code == 0, err
    job_id = worker.ids[-1]
    assert f"job {job_id} queued: prune-l1 on {model}" in out
    assert f"job {job_id} succeeded: 1 row(s)" in out and "prune-l1 (cli test)" in out
    assert "100%" in err and "succeeded" in err  # the progress bar went to stderr
    code, out, _ = run(capsys, "status", str(job_id), "--url", url)
    assert code == 0 and "succeeded" in out and "prune-l1 (cli test)" in out


def test_submit_without_wait_returns_at_once(server: Server, model: str, capsys: Capture) -> None:
    url, worker = server
    code, out, _ = run(capsys, "submit", "--url", url, "--model", model, "--technique", "narrow")
    assert code == 0 and f"job {worker.ids[-1]} queued" in out and "succeeded" not in out
    worker.threads[-1].join(5)


def test_submit_wait_on_a_failing_job(server: Server, model: str, capsys: Capture) -> None:
    url, _ = server
    code, out, _ = run(
        capsys, "submit", "--url", url, "--model", model, "--technique", "quantize-dynamic", "--wait", "--poll", "0.1"
    )
    assert code == 1 and "failed: no Linear layer to quantize (test)" in out


def test_http_errors_show_the_server_detail(server: Server, model: str, capsys: Capture) -> None:
    url, _ = server
    code, _, err = run(
        capsys, "submit", "--url", url, "--model", model, "--technique", "prune-l1", "--params", '{"amount": 2}'
    )
    assert code == 1 and "HTTP 422" in err and "params.amount" in err and "exclusiveMaximum" in err
    code, _, err = run(capsys, "submit", "--url", url, "--model", model, "--technique", "shrink")
    assert code == 1 and "unknown_technique" not in err and "prune-l1" in err  # the valid names are listed
    code, _, err = run(capsys, "comparison", "--url", url, "--model", "nope")
    assert code == 1 and "HTTP 404" in err and "unknown base model 'nope'" in err and model in err
    code, _, err = run(capsys, "status", "999999", "--url", url)
    assert code == 1 and "job 999999 does not exist" in err
    code, _, err = run(capsys, "submit", "--url", url, "--technique", "prune-l1", "--params", "{amount: 1}")
    assert code == 1 and "--params is not valid JSON" in err


def test_unreachable_server(capsys: Capture) -> None:
    code, _, err = run(capsys, "status", "--url", f"http://127.0.0.1:{_free_port()}", "--timeout", "2")
    assert code == 1 and "cannot reach the API" in err and "netreduce up" in err


def test_status_lists_jobs(server: Server, model: str, capsys: Capture) -> None:
    url, worker = server
    code, out, _ = run(capsys, "status", "--url", url, "--limit", "5")
    assert code == 0 and "jobs (newest first)" in out and str(worker.ids[-1]) in out and "job(s)" in out


def test_comparison_table_and_csv(server: Server, model: str, capsys: Capture) -> None:
    url, _ = server
    code, out, _ = run(capsys, "comparison", "--url", url, "--model", model)
    assert code == 0 and "quantize-int8 (seeded)" in out and "★" in out
    assert out.index("baseline") < out.index("quantize-int8 (seeded)")
    code, out, _ = run(capsys, "comparison", "--url", url, "--model", model, "--csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[0]["label"] == "baseline" and list(rows[0])[-1] == "pareto"
    assert {r["label"]: r["pareto"] for r in rows}["quantize-int8 (seeded)"] == "true"


def test_recommend(server: Server, model: str, capsys: Capture) -> None:
    url, _ = server
    code, out, _ = run(capsys, "recommend", "--url", url, "--model", model, "--budget", "0.5", "--priority", "size")
    assert code == 0 and "Keep:" in out and "quantize-int8 (seeded)" in out.splitlines()[0]
    assert "constraint:" in out and "score:" in out
    code, out, _ = run(capsys, "recommend", "--url", url, "--model", model, "--budget", "-50")
    assert code == 0 and "No row qualifies." in out and "excluded:" in out


def test_report_to_stdout_and_to_a_file(server: Server, model: str, capsys: Capture, tmp_path) -> None:  # noqa: ANN001
    url, _ = server
    code, out, _ = run(capsys, "report", "--url", url, "--model", model)
    assert code == 0 and out.startswith("# ") and "quantize-int8 (seeded)" in out and "## Recommendation" in out
    target = tmp_path / "r.html"
    code, _, err = run(capsys, "report", "--url", url, "--model", model, "--format", "html", "-o", str(target))
    assert code == 0 and f"wrote {target}" in err and target.read_text().startswith("<!DOCTYPE html>")


def test_retime_queues_a_job(server: Server, model: str, capsys: Capture) -> None:
    url, worker = server
    code, _, err = run(capsys, "retime", "--url", url, "--model", model)
    assert code == 1 and "a retime needs a trained model" in err  # seeded: no stored model file
    with Session(server_engine(server)) as s:
        base = s.get(BaseModelRow, model)
        assert base is not None
        base.artifact_path = "seeded.safetensors"
        s.add(base)
        s.commit()
    code, out, _ = run(capsys, "retime", "--url", url, "--model", model)
    assert code == 0 and f"queued retime job {worker.ids[-1]} for '{model}'" in out
    code, _, err = run(capsys, "retime", "--url", url, "--model", "nope")
    assert code == 1 and "nope" in err


def test_export_says_why_when_there_is_no_stored_model(server: Server, model: str, capsys: Capture) -> None:
    url, _ = server
    with Session(server_engine(server)) as s:
        job_id = s.exec(select(Job.id).where(Job.base_model_id == model, Job.technique == "quantize-int8")).first()
    code, _, err = run(capsys, "export", str(job_id), "--url", url)
    assert code == 1 and "has no stored model" in err
