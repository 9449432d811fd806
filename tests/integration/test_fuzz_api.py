"""Schemathesis (every check) against uvicorn on PostgreSQL: no 5xx; NUL bytes and SQL-looking text on PostgreSQL.

The API runs as a real uvicorn process on a migrated schema of its own in database ``test``, with a
bearer token set (so the ``ignored_auth`` check proves every mutating operation refuses a missing or
wrong one) and the preset model trained in-process beforehand, so the comparison, plots, report and
artifact routes answer with real rows. Nobody consumes the queue: this is about what the API answers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text

from store.db import create_engine
from store.migrate import upgrade_head
from store.settings import Settings
from tests.integration.conftest import PG_ADMIN_URL, Proc, child_env, free_port, unavailable, uvicorn_cmd
from tests.integration.conftest import wait_healthy as wait_api
from tests.worker.conftest import add_job

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SCHEMA = "netreduce_fuzz"
URL = f"{PG_ADMIN_URL}?options=-csearch_path%3D{SCHEMA}"
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
UPLOAD_LIMIT = 1_048_576

CONFIG = """
# Schema-valid requests the server still refuses (422) for reasons the schema cannot express: a technique's
# params and a chain's order (POST /jobs), whether a layer spec builds (POST /models, /models/upload). Every
# other route states what it enforces (the objectives of comparison, report and recommendation as a pattern).
[[operations]]
include-path-regex = "^/(jobs|models|models/upload)$"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422"]

"""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Proc]]:
    """uvicorn on a fresh schema, the preset trained and one quantize-dynamic job done (in-process)."""
    try:
        admin = sa_create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
        admin.dispose()
    except Exception as exc:
        unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    tmp = tmp_path_factory.mktemp("fuzz")
    values = {
        "database_url": URL,
        "broker_url": f"sqla+sqlite:///{tmp}/broker.db",
        "artifact_dir": str(tmp / "artifacts"),
        "data_roots": str(tmp),
        "api_token": TOKEN,
        "max_upload_bytes": str(UPLOAD_LIMIT),
        "latency_runs": "1",
        "reaper_interval_s": "0",
    }
    upgrade_head(URL)
    from worker.execution import execute_job

    engine = create_engine(URL)
    settings = Settings(**{**values, "data_roots": [str(tmp)]})
    for kind in ("train", "compress"):
        assert execute_job(add_job(engine, "digits-cnn", kind=kind), engine, settings) == "succeeded"
    engine.dispose()
    port = free_port()
    proc = Proc("api", uvicorn_cmd(port), child_env(**values), tmp)
    try:
        wait_api(f"http://127.0.0.1:{port}", [proc])
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


def server_errors(proc: Proc) -> list[str]:
    return [line for line in proc.log.read_text(errors="replace").splitlines() if re.search(r'" 5\d\d ', line)]


def test_schemathesis_every_check_no_5xx(api: tuple[str, Proc], tmp_path: Path) -> None:
    """Every check but ``use_after_free``: DELETE /jobs/{id} cancels, the job stays readable by design,
    and that check takes it for a deleted resource still served."""
    base_url, proc = api
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{base_url}/openapi.json",
        "--checks", "all", "--exclude-checks", "use_after_free", "-H", f"Authorization: Bearer {TOKEN}",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "30", "--seed", "6",
        "--workers", "1", "--request-timeout", "30", "--no-color",
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240)
    report = run.stdout[-6000:] + "\n" + run.stderr[-2000:]
    assert run.returncode == 0, report
    operations = sum(len(ops) for ops in httpx.get(f"{base_url}/openapi.json").json()["paths"].values())
    tested = re.search(r"Tested:\s+(\d+)", run.stdout)
    cases = re.search(r"(\d+) generated", run.stdout)
    assert tested and int(tested.group(1)) == operations, report
    assert cases and int(cases.group(1)) > 30 * operations, report
    assert server_errors(proc) == []


def test_nul_bytes_sql_text_and_huge_numbers_on_postgres(api: tuple[str, Proc]) -> None:
    base_url, proc = api
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
        for url in ("/jobs?technique=a%00b", "/models/a%00b", "/comparison?base_model_id=%00", "/jobs/1%00"):
            r = client.get(url)
            assert r.status_code == 422 and r.json()["detail"][0]["type"] == "nul_byte", (url, r.text)
        body = {"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.5, "n\x00": "x"}}
        r = client.post("/jobs", json=body)
        assert r.status_code == 422 and "\x00" not in r.json()["detail"][0]["msg"]
        assert client.post("/models", json={"name": "n\x00", "architecture": "digits-cnn"}).status_code == 422
        for sqlish in ("x'); DROP TABLE jobs; --", "' OR '1'='1", "%_\\"):
            r = client.post("/models", json={"name": sqlish, "architecture": "digits-cnn", "dataset": "digits"})
            assert r.status_code == 202, r.text
            assert client.get(f"/models/{r.json()['id']}").json()["name"] == sqlish
        assert client.get("/jobs", params={"technique": "' OR 1=1 --"}).json()["total"] == 0
        assert client.get("/jobs", params={"offset": 2**63}).status_code == 422
        assert client.get(f"/jobs/{2**40}").status_code == 422
        assert client.get("/jobs").json()["total"] >= 2  # the tables are all still there
    assert server_errors(proc) == []


def test_upload_limit_holds_over_a_real_socket(api: tuple[str, Proc]) -> None:
    """A chunked body (no Content-Length) is counted as it arrives; uvicorn answers 413 at the limit."""
    base_url, proc = api

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="weights"; filename="w.safetensors"\r\n\r\n'
        for _ in range(64):  # 4 MiB of file offered against a 1 MiB limit
            yield b"x" * 65536

    headers = {**AUTH, "content-type": "multipart/form-data; boundary=b"}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        try:
            r = client.post("/models/upload", content=body(), headers=headers)
        except httpx.HTTPError as exc:  # the server may close before the client has sent everything
            pytest.fail(f"no 413 answer: {exc!r}")
    assert r.status_code == 413 and f"larger than {UPLOAD_LIMIT} bytes" in r.json()["detail"]
    assert server_errors(proc) == []
