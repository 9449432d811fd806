"""/models, the preset, and the data-root rule for idx:/npz: data set specs."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
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


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, compress: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
        raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        raw += array.astype(np.uint8).tobytes()
        name = f"{prefix}-{kind}-ubyte" + (".gz" if compress else "")
        (folder / name).write_bytes(gzip.compress(raw) if compress else raw)


def _digits_like(folder: Path, size: int = 8, classes: int = 10, n: int = 20) -> Path:
    rng = np.random.default_rng(0)
    write_idx(folder, "t10k", rng.integers(0, 255, (n, size, size)), np.arange(n) % classes)
    return folder


def _post_dataset(client: TestClient, dataset: str) -> tuple[int, dict]:
    r = client.post("/models", json={"name": "d", "architecture": "digits-cnn", "dataset": dataset})
    return r.status_code, r.json()


def test_path_dataset_only_under_data_roots(client: TestClient, data_root: Path, tmp_path: Path) -> None:
    inside = _digits_like(data_root / "mnist")
    code, body = _post_dataset(client, f"idx:{inside}")
    assert code == 202, body
    stored = client.get(f"/models/{body['id']}").json()["dataset"]
    assert stored == f"idx:{os.path.realpath(inside)}"

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    code, body = _post_dataset(client, f"idx:{outside}")
    assert code == 422 and body["detail"][0]["loc"] == ["body", "dataset"]
    assert "outside the allowed data roots" in body["detail"][0]["msg"]
    assert str(data_root) not in json.dumps(body)  # the server's roots are not shown

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


def _post_layers(client: TestClient, layers: list[dict]) -> tuple[int, dict]:
    r = client.post("/models", json={"name": "x", "architecture": layers, "input_shape": [1, 8, 8]})
    return r.status_code, r.json()


FLAT_FC = [
    {"name": "flat", "type": "Flatten"},
    {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
]


def test_layer_arguments_that_fail_later_are_a_422_naming_layer_and_argument(
    client: TestClient, recorder: EnqueueRecorder
) -> None:
    conv = {"name": "conv1", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 1, "kernel_size": 1}}
    zero_stride = {**conv, "args": {**conv["args"], "stride": 0}}  # was a 500 (ZeroDivisionError on meta)
    code, body = _post_layers(client, [zero_stride, *FLAT_FC])
    assert code == 422, body
    assert body["detail"][0]["loc"] == ["body", "architecture"] and body["detail"][0]["type"] == "invalid_spec"
    assert "layer 'conv1' (Conv2d): argument 'stride' must be an integer from 1" in body["detail"][0]["msg"]
    assert "got 0" in body["detail"][0]["msg"]

    empty = {"name": "fc0", "type": "Linear", "args": {"in_features": 64, "out_features": 0}}  # was accepted
    code, body = _post_layers(
        client, [FLAT_FC[0], empty, {**FLAT_FC[1], "args": {"in_features": 0, "out_features": 10}}]
    )
    assert code == 422 and "layer 'fc0' (Linear): argument 'out_features' must be" in body["detail"][0]["msg"]

    slope = {"name": "act", "type": "LeakyReLU", "args": {"negative_slope": float("nan")}}  # was accepted
    raw = json.dumps({"name": "x", "architecture": [slope, *FLAT_FC], "input_shape": [1, 8, 8]})  # httpx refuses NaN
    r = client.post("/models", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "negative_slope" in r.text, r.text

    code, body = _post_layers(client, [{"name": "flat\n", "type": "Flatten"}, FLAT_FC[1]])
    assert code == 422 and "name must be a Python identifier" in body["detail"][0]["msg"]
    assert recorder.ids == []


def test_models_that_can_never_train_are_refused(
    client: TestClient, data_root: Path, tmp_path: Path, recorder: EnqueueRecorder
) -> None:
    """Data set absent here, empty or malformed, or not fitting the model: 422 at POST, not a failed job."""
    code, body = _post_dataset(client, "mnist")  # torchvision, not under the data root, downloads off
    assert code == 422 and body["detail"][0]["loc"] == ["body", "dataset"], body
    assert body["detail"][0]["type"] == "unusable_dataset"
    assert "not found in the data root (missing MNIST/raw/train-images-idx3-ubyte" in body["detail"][0]["msg"]
    assert "NETREDUCE_ALLOW_DOWNLOAD" in body["detail"][0]["msg"]

    empty = data_root / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no data here")
    code, body = _post_dataset(client, f"idx:{empty}")
    assert code == 422 and "no '*-images-idx*' / '*-labels-idx*' pair" in body["detail"][0]["msg"], body
    code, body = _post_dataset(client, f"npz:{empty}")
    assert code == 422 and "is a folder" in body["detail"][0]["msg"]
    np.savez(data_root / "labels_only.npz", y_train=np.arange(10))
    code, body = _post_dataset(client, f"npz:{data_root / 'labels_only.npz'}")
    assert code == 422 and "lacks ['x_train']" in body["detail"][0]["msg"]
    (data_root / "junk.npz").write_bytes(b"not a zip")
    code, body = _post_dataset(client, f"npz:{data_root / 'junk.npz'}")
    assert code == 422 and "is not an .npz archive" in body["detail"][0]["msg"]

    big = _digits_like(data_root / "big", size=28)
    code, body = _post_dataset(client, f"idx:{big}")  # digits-cnn defaults to 1x8x8
    msg = body["detail"][0]["msg"]
    assert code == 422 and "model input shape (1, 8, 8) does not match data set" in msg, body
    assert "sample shape (1, 28, 28); give input_shape [1, 28, 28]" in msg and f"'idx:{big}'" in msg
    r = client.post(
        "/models", json={"name": "d", "architecture": "digits-cnn", "dataset": f"idx:{big}", "input_shape": [1, 28, 28]}
    )
    assert r.status_code == 202, r.text

    five = [FLAT_FC[0], {**FLAT_FC[1], "args": {"in_features": 64, "out_features": 5}}]
    r = client.post("/models", json={"name": "x", "architecture": five, "input_shape": [1, 8, 8], "dataset": "digits"})
    assert r.status_code == 422 and "model has 5 outputs but data set 'digits' has 10 classes" in r.text, r.text
    assert len(recorder.ids) == 1


def test_npz_and_gzipped_idx_that_fit_are_accepted(client: TestClient, data_root: Path) -> None:
    rng = np.random.default_rng(1)
    path = data_root / "keras.npz"
    np.savez_compressed(
        path,
        x_train=rng.integers(0, 255, (30, 8, 8, 1)).astype(np.uint8),
        y_train=np.arange(30) % 10,
        x_test=rng.integers(0, 255, (10, 8, 8, 1)).astype(np.uint8),
        y_test=np.arange(10),
    )
    assert _post_dataset(client, f"npz:{path}")[0] == 202
    gz = data_root / "gz"
    write_idx(gz, "train", rng.integers(0, 255, (20, 8, 8)), np.arange(20) % 10, compress=True)
    assert _post_dataset(client, f"idx:{gz}")[0] == 202
