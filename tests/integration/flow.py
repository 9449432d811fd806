"""The user story over HTTP: train a base model, two compress jobs, then check /comparison values."""

from __future__ import annotations

import csv
import io
import json

import httpx

from compress.persistence import model_from_bytes
from tests.api.test_comparison import COLUMNS  # the column order, written out once
from tests.integration.conftest import Proc, wait_jobs


def run_flow(client: httpx.Client, procs: list[Proc]) -> None:
    r = client.post(
        "/models",
        json={"name": "it", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": 3, "seed": 1}},
    )
    assert r.status_code == 202, r.text
    model_id, train_job = r.json()["id"], r.json()["training_job_id"]
    jobs = [train_job]
    for body in (
        {"technique": "prune-l1", "params": {"amount": 0.5, "epochs": 1}},
        {"technique": "quantize-int8", "params": {"calibration_samples": 200}},
    ):
        r = client.post("/jobs", json={"base_model_id": model_id, **body})
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/jobs/{r.json()['id']}"
        jobs.append(r.json()["id"])
    bad = client.post("/jobs", json={"base_model_id": model_id, "technique": "prune-l1", "params": {"amount": 2}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "amount"

    done = wait_jobs(client, jobs, procs)
    for jid, job in done.items():
        assert job["status"] == "succeeded", (jid, job["error"])
        assert job["progress"] == 1.0 and job["attempts"] == 1 and job["started_at"] and job["finished_at"]
    prune_rows = done[jobs[1]]["rows"]
    assert [r["row_index"] for r in prune_rows] == [1] and prune_rows[0]["has_artifact"]

    model = client.get(f"/models/{model_id}").json()
    assert model["status"] == "ready" and model["baseline"]["technique"] == "baseline"
    assert [layer["name"] for layer in model["layers"]][:1] == ["conv1"]

    rows = client.get("/comparison", params={"base_model_id": model_id}).json()
    assert [r["technique"] for r in rows] == ["baseline", "prune-l1", "quantize-int8"]
    assert [r["job_id"] for r in rows] == jobs
    base = rows[0]
    assert base["size_ratio"] == 1.0 and base["ops_ratio"] == 1.0 and base["accuracy"] > 60
    for row in rows:
        assert list(row)[: len(COLUMNS)] == COLUMNS
        assert row["size_ratio"] == round(row["bytes"] / base["bytes"], 6)
        assert row["ops_ratio"] == round(row["ops"] / base["ops"], 6)
        assert row["accuracy_drop"] == round(base["accuracy"] - row["accuracy"], 4) or row is base
    prune, int8 = rows[1], rows[2]
    assert prune["sparse_macs"] < prune["macs"]
    assert json.loads(prune["params"]) == prune_rows[0]["params"] and " " not in prune["params"]  # compact JSON
    assert int8["bytes"] < 0.35 * base["bytes"] and int8["size_ratio"] < 0.35  # int8 weights: ~1/4 of fp32
    assert int8["n_params"] == base["n_params"] and int8["macs"] == base["macs"]

    r = client.get("/comparison", params={"base_model_id": model_id, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].split(",")[: len(COLUMNS)] == COLUMNS
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert len(table) == len(rows)
    for got, want in zip(table, rows, strict=True):
        assert got["label"] == want["label"] and got["params"] == want["params"]
        assert int(got["bytes"]) == want["bytes"] and int(got["job_id"]) == want["job_id"]
        assert float(got["size_ratio"]) == want["size_ratio"] and float(got["accuracy"]) == want["accuracy"]

    blob = client.get(f"/jobs/{jobs[2]}/artifact")
    assert blob.status_code == 200 and blob.headers["content-type"] == "application/octet-stream"
    net, spec = model_from_bytes(blob.content)
    assert spec.num_classes == 10 and len(blob.content) == int8["file_bytes"]
    assert client.delete(f"/jobs/{jobs[1]}").status_code == 409
