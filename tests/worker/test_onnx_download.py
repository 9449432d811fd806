"""GET /jobs/{id}/artifact?format=onnx: every kind of variant downloads as ONNX that onnxruntime runs, agreeing
with PyTorch on the evaluation split; made once at job time (with its onnxruntime latency), the same bytes every
time, and made again identically if its file is gone."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from compress.datasets import load_dataset
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
}


@pytest.fixture(scope="module")
def model_id(engine: Engine, settings: Settings) -> str:
    mid = add_base_model(engine, "onnx-dl", epochs=10)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    return mid


@pytest.fixture(scope="module")
def client(engine: Engine, settings: Settings) -> Any:
    with app_client(engine, settings, EnqueueRecorder(engine)) as c:
        yield c


def _job_for(client: TestClient, engine: Engine, settings: Settings, mid: str, technique: str) -> int:
    if technique == "baseline":
        return client.get(f"/models/{mid}").json()["training_job_id"]
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
    if technique == "quantize-int8":  # quantized again by onnxruntime on the same calibration samples
        assert abs(ort_acc - row["accuracy"]) <= 0.3 + 100 / len(data.eval_y), (ort_acc, row["accuracy"])
    else:
        assert float((ort_pred == torch_pred).float().mean()) >= 0.995
    note = row["notes"]["onnx"]
    assert note["route"] == {"quantize-int8": "ort-static-qdq", "quantize-dynamic": "ort-dynamic"}.get(
        technique, "fp32"
    )
    assert note["ort_accuracy"] == pytest.approx(ort_acc, abs=1e-3)
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
    job_id = _job_for(client, engine, settings, model_id, "quantize-dynamic")  # made at job time: the error noted
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
