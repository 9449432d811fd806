"""/models, the preset, and the data-root rule for idx:/npz: data set specs."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.conftest import EnqueueRecorder
from tests.api.seed import add_job, add_row


def test_preset_model_exists_from_the_start(client: TestClient) -> None:
    models = {m["id"]: m for m in client.get("/models").json()}
    preset = models["digits-cnn"]
    assert preset["preset"] is True and preset["dataset"] == "digits" and preset["status"] == "untrained"
    detail = client.get("/models/digits-cnn").json()
    assert detail["baseline"] is None and detail["layers"] is None


def test_post_model_queues_its_training_job(client: TestClient, recorder: EnqueueRecorder) -> None:
    r = client.post(
        "/models", json={"name": "tiny", "architecture": "digits-cnn", "dataset": "digits", "training": {"epochs": 2}}
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert recorder.ids == [body["training_job_id"]] and recorder.status_at_enqueue == ["queued"]
    assert r.headers["location"] == f"/models/{body['id']}"
    model = client.get(f"/models/{body['id']}").json()
    assert model["status"] == "untrained" and model["training"]["epochs"] == 2 and model["input_shape"] == [1, 8, 8]
    job = client.get(f"/jobs/{body['training_job_id']}").json()
    assert job["kind"] == "train" and job["base_model_id"] == body["id"] and job["status"] == "queued"


def test_custom_layer_spec(client: TestClient) -> None:
    layers = [
        {"name": "flatten", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
    ]
    r = client.post("/models", json={"name": "linear", "architecture": layers, "input_shape": [1, 8, 8]})
    assert r.status_code == 202, r.text
    assert client.get(f"/models/{r.json()['id']}").json()["num_classes"] == 10


def test_model_errors_name_the_field(client: TestClient, recorder: EnqueueRecorder) -> None:
    r = client.post("/models", json={"name": "x", "architecture": "vgg99"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "architecture"]
    assert "digits-cnn" in r.json()["detail"][0]["msg"]
    bad_layer = [{"name": "evil", "type": "os.system", "args": {}}]
    r = client.post("/models", json={"name": "x", "architecture": bad_layer, "input_shape": [1, 8, 8]})
    assert r.status_code == 422 and "not allowed" in r.json()["detail"][0]["msg"]
    r = client.post("/models", json={"name": "x", "architecture": [{"name": "f", "type": "Flatten"}]})
    assert r.status_code == 422 and "input_shape" in r.json()["detail"][0]["msg"]
    r = client.post("/models", json={"name": "x", "architecture": "digits-cnn", "training": {"epochs": 1000}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "training", "epochs"]
    r = client.post("/models", json={"name": "x", "architecture": "digits-cnn", "dataset": "imagenet"})
    assert r.status_code == 422 and "digits" in r.json()["detail"][0]["msg"]
    assert recorder.ids == []
    assert client.get("/models/ghost").status_code == 404


def test_model_detail_has_baseline_and_layers(client: TestClient, engine: Engine) -> None:
    from sqlmodel import Session

    from store.tables import BaseModelRow

    r = client.post("/models", json={"name": "trained", "architecture": "digits-cnn"})
    mid, job = r.json()["id"], r.json()["training_job_id"]
    with Session(engine) as s:
        base = s.get(BaseModelRow, mid)
        assert base is not None
        base.status = "ready"
        s.add(base)
        s.commit()
    layers = [{"name": "conv1", "params": 160, "macs": 9216}]
    add_row(engine, job, mid, 0, technique="baseline", label="baseline", layers=layers)
    detail = client.get(f"/models/{mid}").json()
    assert detail["status"] == "ready" and detail["baseline"]["label"] == "baseline"
    assert detail["layers"][0]["name"] == "conv1"
    _ = add_job  # seed helper shared with other modules


def _post_dataset(client: TestClient, dataset: str) -> tuple[int, dict]:
    r = client.post("/models", json={"name": "d", "architecture": "digits-cnn", "dataset": dataset})
    return r.status_code, r.json()


def test_path_dataset_only_under_data_roots(client: TestClient, data_root: Path, tmp_path: Path) -> None:
    inside = data_root / "mnist"
    inside.mkdir(exist_ok=True)
    code, body = _post_dataset(client, f"idx:{inside}")
    assert code == 202, body
    stored = client.get(f"/models/{body['id']}").json()["dataset"]
    assert stored == f"idx:{os.path.realpath(inside)}"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code, body = _post_dataset(client, f"idx:{outside}")
    assert code == 422 and body["detail"][0]["loc"] == ["body", "dataset"]
    assert "outside the allowed data roots" in body["detail"][0]["msg"]

    code, body = _post_dataset(client, f"idx:{inside}/../../")  # '..' escape
    assert code == 422 and "outside" in body["detail"][0]["msg"]
    code, body = _post_dataset(client, "npz:/etc/passwd")
    assert code == 422 and "outside" in body["detail"][0]["msg"]

    link = data_root / "sneaky"
    if not link.exists():
        link.symlink_to(outside, target_is_directory=True)
    code, body = _post_dataset(client, f"idx:{link}")  # a symlink inside a root that points out
    assert code == 422 and "outside" in body["detail"][0]["msg"]

    code, body = _post_dataset(client, f"npz:{data_root}/missing.npz")
    assert code == 422 and "does not exist" in body["detail"][0]["msg"]
    code, body = _post_dataset(client, "idx:")
    assert code == 422
    code, body = _post_dataset(client, "digits:/etc")
    assert code == 422 and "takes no path" in body["detail"][0]["msg"]
