"""GET /jobs/{id}/artifact?format=onnx: every kind of variant downloads as ONNX that onnxruntime runs, agreeing
with PyTorch on the evaluation split; made once at job time (with its onnxruntime latency), the same bytes every
time, and made again identically if its file is gone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from cli.client import ClientError, cmd_export
from cli.main import build_parser
from compress.datasets import DatasetError, load_dataset
from compress.export_onnx import ExportError
from compress.persistence import model_from_bytes
from store.artifacts import ArtifactStore
from store.onnx_exports import onnx_path
from store.settings import Settings
from tests.api.conftest import EnqueueRecorder, app_client
from tests.worker.conftest import add_base_model, add_job
from worker.execution import execute_job

TECHNIQUES: dict[str, dict[str, Any]] = {
    "baseline": {},
    "prune-l1": {"amount": 0.6, "epochs": 0},
    "prune-channels": {"amount": 0.5, "mode": "remove", "epochs": 0},
    "narrow": {"width": 0.5, "epochs": 1},
    "quantize-int8": {},
    "quantize-dynamic": {},
    "orthogonal": {"epochs": 1},
    "separable": {"epochs": 1},
    "prune-channels+quantize-int8": {},  # a chain: its int8 step decides the route and the calibration
}
CHAIN_PARAMS = {"prune-channels": {"amount": 0.5, "mode": "remove", "epochs": 2}}
"""A chain's steps: pruned then fine-tuned before quantizing, as one would."""


@pytest.fixture(scope="module")
def model_id(engine: Engine, settings: Settings) -> str:
    mid = add_base_model(engine, "onnx-dl", epochs=10)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    return mid


@pytest.fixture(scope="module")
def client(engine: Engine, settings: Settings) -> Any:
    with app_client(engine, settings, EnqueueRecorder(engine)) as c:
        yield c


_JOBS: dict[tuple[str, str], int] = {}


def _job_for(client: TestClient, engine: Engine, settings: Settings, mid: str, technique: str) -> int:
    """A succeeded job of ``technique`` on ``mid`` (one per module: later tests reuse the first's)."""
    if (mid, technique) not in _JOBS:
        _JOBS[mid, technique] = _run_job(client, engine, settings, mid, technique)
    return _JOBS[mid, technique]


def _run_job(client: TestClient, engine: Engine, settings: Settings, mid: str, technique: str) -> int:
    if technique == "baseline":
        return client.get(f"/models/{mid}").json()["training_job_id"]
    if "+" in technique:
        steps = [{"technique": t, "params": CHAIN_PARAMS.get(t, TECHNIQUES[t])} for t in technique.split("+")]
        body = {"base_model_id": mid, "steps": steps, "rerun": True}
    else:
        body = {"base_model_id": mid, "technique": technique, "params": TECHNIQUES[technique], "rerun": True}
    r = client.post("/jobs", json=body)
    assert r.status_code == 202, r.text
    assert execute_job(r.json()["id"], engine, settings) == "succeeded"
    return r.json()["id"]


@pytest.mark.parametrize("technique", list(TECHNIQUES))
def test_every_variant_downloads_as_onnx_that_agrees(
    client: TestClient, engine: Engine, settings: Settings, model_id: str, technique: str
) -> None:
    job_id = _job_for(client, engine, settings, model_id, technique)
    got = client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert got.status_code == 200, got.text
    assert got.headers["content-disposition"].endswith('.onnx"')
    assert got.headers["content-type"] == "application/octet-stream"
    again = client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert again.content == got.content  # kept: the same bytes

    data = load_dataset("digits", seed=0)
    session = ort.InferenceSession(got.content, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.shape[0] not in (1, 64)  # the batch dimension is dynamic
    ort_pred = torch.from_numpy(session.run(None, {inp.name: data.eval_x.numpy()})[0]).argmax(1)
    model, _ = model_from_bytes(client.get(f"/jobs/{job_id}/artifact").content)
    with torch.inference_mode():
        torch_pred = model.eval()(data.eval_x).argmax(1)
    rows = client.get(f"/jobs/{job_id}").json()["rows"]
    (row,) = [r for r in rows if r["has_artifact"]]
    ort_acc = 100.0 * float((ort_pred == data.eval_y).float().mean())
    if technique.endswith("quantize-int8"):  # quantized again by onnxruntime on the same calibration samples
        assert abs(ort_acc - row["accuracy"]) <= 0.3, (ort_acc, row["accuracy"])
    else:
        assert float((ort_pred == torch_pred).float().mean()) >= 0.995
    note = row["notes"]["onnx"]
    routes = {"quantize-int8": "ort-static-qdq", "quantize-dynamic": "ort-dynamic"}
    assert note["route"] == routes.get(technique.split("+")[-1], "fp32")
    assert got.headers["x-netreduce-onnx-route"] == note["route"]
    assert note["ort_accuracy"] == pytest.approx(ort_acc, abs=1e-3)
    assert note["torch_accuracy"] == pytest.approx(row["accuracy"], abs=1e-3)  # checked beside the row's own
    assert row["ort_latency_ms_bs1"] > 0 and row["ort_latency_ms_bs64"] > 0

    # made at job time and kept beside the artifact; gone (e.g. rows from before exports), it is made again alike
    with engine.connect() as conn:
        artifact = conn.execute(
            text("SELECT artifact_path FROM result_rows WHERE job_id = :j AND row_index = :i"),
            {"j": job_id, "i": row["row_index"]},
        ).scalar_one()
    path = onnx_path(ArtifactStore(settings.artifact_dir), artifact)
    assert path.read_bytes() == got.content
    path.unlink()
    assert client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx"}).content == got.content
    assert path.is_file()


def test_onnx_of_an_unfinished_job_is_409(client: TestClient, engine: Engine, model_id: str) -> None:
    body = {"base_model_id": model_id, "technique": "quantize-dynamic", "rerun": True}
    jid = client.post("/jobs", json=body).json()["id"]
    r = client.get(f"/jobs/{jid}/artifact", params={"format": "onnx"})
    assert r.status_code == 409
    assert client.get(f"/jobs/{jid}/artifact", params={"format": "tflite"}).status_code == 422


def test_a_variant_that_cannot_be_exported_is_a_422_saying_why(
    client: TestClient, engine: Engine, settings: Settings, model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import store.onnx_exports

    def refuse(*_: Any, **__: Any) -> None:
        raise ExportError("transform(s) ['mystery'] have no ONNX export")

    monkeypatch.setattr(store.onnx_exports, "export_onnx", refuse)
    job_id = _run_job(client, engine, settings, model_id, "quantize-dynamic")  # made at job time: the error noted
    (row,) = client.get(f"/jobs/{job_id}").json()["rows"]
    assert row["notes"]["onnx"] == {"error": "transform(s) ['mystery'] have no ONNX export"}
    assert row["ort_latency_ms_bs64"] is None
    r = client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert r.status_code == 422
    assert (
        r.json()["detail"]
        == f"job {job_id} row 1 cannot be exported to ONNX: transform(s) ['mystery'] have no ONNX export"
    )
    assert client.get(f"/jobs/{job_id}/artifact").status_code == 200  # safetensors as ever


def _forget_export(engine: Engine, settings: Settings, job_id: int) -> Any:
    """Remove a row's kept export (as for rows stored before exports existed); return its path."""
    with engine.connect() as conn:
        artifact = conn.execute(
            text("SELECT artifact_path FROM result_rows WHERE job_id = :j AND artifact_path IS NOT NULL"), {"j": job_id}
        ).scalar_one()
    path = onnx_path(ArtifactStore(settings.artifact_dir), artifact)
    path.unlink(missing_ok=True)
    path.with_suffix(".onnx.json").unlink(missing_ok=True)
    return path


def test_concurrent_first_downloads_export_once_outside_the_event_loop(
    client: TestClient, engine: Engine, settings: Settings, model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import store.onnx_exports

    job_id = _job_for(client, engine, settings, model_id, "quantize-int8")
    url = f"/jobs/{job_id}/artifact"
    kept = client.get(url, params={"format": "onnx"}).content
    path = _forget_export(engine, settings, job_id)
    exporting, go_on, calls = threading.Event(), threading.Event(), []
    real_export = store.onnx_exports.export_onnx

    def held_export(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        exporting.set()
        go_on.wait(30)
        return real_export(*args, **kwargs)

    monkeypatch.setattr(store.onnx_exports, "export_onnx", held_export)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(client.get, url, params={"format": "onnx"})
        assert exporting.wait(30)
        second = pool.submit(client.get, url, params={"format": "onnx"})
        assert client.get(f"/jobs/{job_id}").status_code == 200  # the API answers while the export runs
        go_on.set()
        got = [first.result(60), second.result(60)]
    assert [r.status_code for r in got] == [200, 200], [r.text[-300:] for r in got]
    assert got[0].content == got[1].content == kept == path.read_bytes()  # made again alike (same calibration)
    assert len(calls) == 1  # the second download waited for, then served, the first one's export
    assert list(path.parent.glob(".*.tmp")) == []  # no half-written file left behind


def test_calibration_data_unavailable_at_first_download_is_a_422_saying_why(
    client: TestClient, engine: Engine, settings: Settings, model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.routers.jobs

    job_id = _job_for(client, engine, settings, model_id, "quantize-int8")
    _forget_export(engine, settings, job_id)

    def gone(*_: Any, **__: Any) -> None:
        raise DatasetError("dataset 'digits' is not under the data roots")

    monkeypatch.setattr(api.routers.jobs, "load_dataset", gone)
    r = client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx"})
    assert r.status_code == 422
    assert "cannot be exported to ONNX: dataset 'digits' is not under the data roots" in r.json()["detail"]


def test_netreduce_export_writes_the_onnx_of_a_row(
    client: TestClient, engine: Engine, settings: Settings, model_id: str, tmp_path: Path
) -> None:
    job_id = _job_for(client, engine, settings, model_id, "prune-channels")
    (row,) = [r for r in client.get(f"/jobs/{job_id}").json()["rows"] if r["has_artifact"]]
    target = tmp_path / "variant.onnx"
    args = build_parser().parse_args(["export", str(job_id), "--row", str(row["row_index"]), "-o", str(target)])
    assert cmd_export(args, client) == 0  # the CLI's command on the API's TestClient (an httpx.Client)
    wanted = client.get(f"/jobs/{job_id}/artifact", params={"format": "onnx", "row_index": row["row_index"]})
    assert target.read_bytes() == wanted.content
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert session.run(None, {session.get_inputs()[0].name: torch.zeros(3, 1, 8, 8).numpy()})[0].shape == (3, 10)

    missing = build_parser().parse_args(["export", str(job_id), "--row", "99", "-o", str(tmp_path / "no.onnx")])
    with pytest.raises(ClientError, match="row 99 of job"):
        cmd_export(missing, client)
    assert not (tmp_path / "no.onnx").exists()
