"""GET /comparison: baseline first, exact column order, ratios, trials, CSV."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.seed import add_job, add_model, add_row

COLUMNS = [
    "label",
    "technique",
    "params",
    "n_params",
    "bytes",
    "file_bytes",
    "macs",
    "flops",
    "ops",
    "sparse_macs",
    "accuracy",
    "accuracy_drop",
    "latency_ms_bs1",
    "latency_ms_bs64",
    "size_ratio",
    "ops_ratio",
    "trial",
    "job_id",
    "created_at",
]


@pytest.fixture(scope="module")
def model(engine: Engine) -> dict[str, int | str]:
    """A baseline written by a later job than two of the variants (ordering must not depend on it)."""
    mid = add_model(engine)
    quant = add_job(engine, mid, technique="quantize-int8")
    add_row(engine, quant, mid, 1, technique="quantize-int8", label="int8", bytes=1000, ops=600, params={"b": 1})
    prune = add_job(engine, mid, technique="prune-l1")
    for i, (amount, trial) in enumerate([(0.3, True), (0.6, True), (0.5, False)], start=1):
        add_row(
            engine,
            prune,
            mid,
            i,
            technique="prune-l1",
            label=f"prune {amount}",
            params={"amount": amount, "scope": "global"},
            trial=trial,
            bytes=int(4000 * (1 - amount)),
            ops=300,
            accuracy=94.0,
            accuracy_drop=1.0,
        )
    train = add_job(engine, mid, technique="train")
    add_row(engine, train, mid, 0, technique="baseline", label="baseline", params={"epochs": 1}, bytes=4000, ops=600)
    other = add_model(engine)
    other_job = add_job(engine, other)
    add_row(engine, other_job, other, 0, technique="baseline", label="other baseline")
    return {"id": mid, "quant": quant, "prune": prune, "train": train}


def test_json_rows_baseline_first_in_column_order(client: TestClient, model: dict) -> None:
    r = client.get("/comparison", params={"base_model_id": model["id"]})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    rows = r.json()
    assert [row["label"] for row in rows] == ["baseline", "int8", "prune 0.5"]
    for row in rows:  # the first columns exactly, in order (new ones may only be appended)
        assert list(row)[: len(COLUMNS)] == COLUMNS
    base, int8, prune = rows
    assert base["size_ratio"] == 1.0 and base["ops_ratio"] == 1.0 and base["job_id"] == model["train"]
    assert int8["size_ratio"] == 0.25 and int8["ops_ratio"] == 1.0
    assert prune["size_ratio"] == 0.5 and prune["ops_ratio"] == 0.5
    assert prune["params"] == '{"amount":0.5,"scope":"global"}'
    assert prune["trial"] is False and prune["job_id"] == model["prune"]


def test_trials_only_when_asked(client: TestClient, model: dict) -> None:
    rows = client.get("/comparison", params={"base_model_id": model["id"], "include_trials": "true"}).json()
    assert [row["label"] for row in rows] == ["baseline", "int8", "prune 0.3", "prune 0.6", "prune 0.5"]
    assert [row["trial"] for row in rows] == [False, False, True, True, False]
    assert rows[3]["size_ratio"] == 0.4


def test_csv_header_order_and_values(client: TestClient, model: dict) -> None:
    r = client.get("/comparison", params={"base_model_id": model["id"], "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.splitlines()
    assert lines[0].split(",")[: len(COLUMNS)] == COLUMNS  # one header row, no index column first
    assert len(lines) == 4
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["label"] for row in rows] == ["baseline", "int8", "prune 0.5"]
    assert json.loads(rows[2]["params"]) == {"amount": 0.5, "scope": "global"}
    assert float(rows[1]["size_ratio"]) == 0.25 and rows[1]["trial"] == "false"
    assert int(rows[0]["bytes"]) == 4000 and int(rows[0]["job_id"]) == model["train"]
    as_json = client.get("/comparison", params={"base_model_id": model["id"]}).json()
    assert [row["created_at"] for row in rows] == [row["created_at"] for row in as_json]


def test_csv_by_accept_header_and_stable(client: TestClient, model: dict) -> None:
    first = client.get("/comparison", params={"base_model_id": model["id"]}, headers={"Accept": "text/csv"})
    assert first.headers["content-type"].startswith("text/csv")
    again = client.get("/comparison", params={"base_model_id": model["id"], "format": "csv"})
    assert first.text == again.text
    explicit = client.get(
        "/comparison", params={"base_model_id": model["id"], "format": "json"}, headers={"Accept": "text/csv"}
    )
    assert explicit.headers["content-type"].startswith("application/json")


def test_untrained_model_has_no_ratios(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine, status="untrained")
    job = add_job(engine, mid)
    add_row(engine, job, mid, 1, technique="prune-l1", label="orphan")
    (row,) = client.get("/comparison", params={"base_model_id": mid}).json()
    assert row["size_ratio"] is None and row["ops_ratio"] is None
    csv_text = client.get("/comparison", params={"base_model_id": mid, "format": "csv"}).text
    assert ",,," in csv_text.splitlines()[1]  # missing values are empty cells


def test_comparison_errors(client: TestClient) -> None:
    assert client.get("/comparison").status_code == 422
    r = client.get("/comparison", params={"base_model_id": "ghost"})
    assert r.status_code == 404 and "digits-cnn" in r.json()["detail"]
    assert client.get("/comparison", params={"base_model_id": "digits-cnn", "format": "xlsx"}).status_code == 422
    assert client.get("/comparison", params={"base_model_id": "digits-cnn"}).json() == []
