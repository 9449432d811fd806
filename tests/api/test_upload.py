"""POST /models/upload: a layer spec plus safetensors weights only; pickles and zips refused unread."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as st_save
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from compress.layer_spec import LayerSpec, build_layers
from compress.persistence import load_model
from store.settings import Settings
from store.tables import BaseModelRow, Job
from tests.api.conftest import EnqueueRecorder

LAYERS = [
    {"name": "flatten", "type": "Flatten"},
    {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
]
SPEC = {"name": "uploaded linear", "architecture": LAYERS, "input_shape": [1, 8, 8], "dataset": "digits"}


def linear_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_layers([LayerSpec.model_validate(x) for x in LAYERS]).state_dict()


def upload(client: TestClient, weights: bytes, filename: str = "weights.safetensors", spec: Any = SPEC) -> Any:
    files = {"weights": (filename, weights, "application/octet-stream")}
    return client.post("/models/upload", data={"spec": json.dumps(spec)}, files=files)


class Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious .pt does to whoever loads it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def rows(engine: Engine) -> tuple[int, int]:
    with Session(engine) as s:
        return len(s.exec(select(BaseModelRow)).all()), len(s.exec(select(Job)).all())


def test_upload_stores_the_weights_under_a_generated_name(
    client: TestClient, recorder: EnqueueRecorder, settings: Settings, engine: Engine
) -> None:
    state = linear_state(seed=3)
    r = upload(client, st_save(state), filename="../../../tmp/evil name.safetensors")
    assert r.status_code == 202, r.text
    body = r.json()
    assert recorder.ids == [body["training_job_id"]] and recorder.status_at_enqueue == ["queued"]
    assert r.headers["location"] == f"/models/{body['id']}"
    with Session(engine) as s:
        base = s.get(BaseModelRow, body["id"])
        assert base is not None and base.artifact_path and base.status == "untrained"
        name = base.artifact_path
        job = s.get(Job, body["training_job_id"])
        assert job is not None and job.kind == "train" and job.technique == "evaluate"
    assert re.fullmatch(rf"upload-{body['id']}-[0-9a-f]{{12}}\.safetensors", name), name
    assert "evil" not in name and not Path("/tmp/evil name.safetensors").exists()
    model, spec = load_model(Path(settings.artifact_dir) / name)
    assert spec.num_classes == 10 and spec.input_shape == (1, 8, 8)
    assert torch.equal(model.state_dict()["fc.weight"], state["fc.weight"])  # the uploaded weights, not a new init
    shown = client.get(f"/models/{body['id']}").json()
    assert shown["name"] == "uploaded linear" and shown["training"]["epochs"] == 0


def test_a_header_length_starting_with_0x80_is_still_safetensors(client: TestClient) -> None:
    state = linear_state()
    pad = next(n for n in range(256) if st_save(state, metadata={"pad": "x" * n})[0] == 0x80)
    data = st_save(state, metadata={"pad": "x" * pad})
    assert data[:1] == b"\x80"  # what a pickle starts with, too
    assert upload(client, data).status_code == 202


def test_pickles_and_zips_are_refused_without_being_loaded(
    client: TestClient, recorder: EnqueueRecorder, engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Payload(marker), protocol=4)
    checkpoint = io.BytesIO()
    torch.save(Payload(marker), checkpoint)  # a modern .pt: a zip with the pickle inside
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    script = io.BytesIO()
    torch.jit.save(torch.jit.script(net), script)
    exported = io.BytesIO()
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 8, 8),)), exported)
    before = rows(engine)
    cases = [
        (payload, "model.pt", "pickle"),
        (payload, "weights.safetensors", "pickle"),  # the name lies; the content decides
        (checkpoint.getvalue(), "weights.safetensors", "zip"),
        (script.getvalue(), "model.torchscript", "zip"),
        (exported.getvalue(), "model.pt2", "zip"),
    ]
    for data, filename, kind in cases:
        r = upload(client, data, filename=filename)
        assert r.status_code == 422, (filename, r.text)
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "weights"] and kind in err["msg"] and err["type"] == "unsupported_weights_format"
    assert not marker.exists()
    assert recorder.ids == [] and rows(engine) == before
    assert not list(Path(settings.artifact_dir).glob("*")) or all(
        p.name.startswith(("upload-", "base-")) for p in Path(settings.artifact_dir).iterdir()
    )
    # The payload is live: unpickling it in another process creates the file the API never created.
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"], input=payload)
    assert marker.exists()


def test_weights_must_match_the_spec(client: TestClient, recorder: EnqueueRecorder) -> None:
    state = linear_state()
    renamed = {"fc.w": state["fc.weight"], "fc.bias": state["fc.bias"]}
    r = upload(client, st_save(renamed))
    assert r.status_code == 422
    msg = r.json()["detail"][0]["msg"]
    assert "missing from the weights: fc.weight" in msg and "not in the spec: fc.w" in msg
    r = upload(client, st_save({"fc.weight": torch.zeros(10, 32), "fc.bias": state["fc.bias"]}))
    assert (
        r.status_code == 422
        and "'fc.weight' has shape [10, 32], the spec needs [10, 64]" in r.json()["detail"][0]["msg"]
    )
    r = upload(client, st_save({"fc.weight": torch.zeros(10, 64, dtype=torch.int32), "fc.bias": state["fc.bias"]}))
    assert r.status_code == 422 and "'fc.weight' is I32, the spec needs a float tensor" in r.json()["detail"][0]["msg"]
    assert recorder.ids == []


def test_broken_safetensors_and_specs_are_422(client: TestClient, recorder: EnqueueRecorder) -> None:
    good = st_save(linear_state())
    header_len = int.from_bytes(good[:8], "little")
    for data, words in [
        (b"", "not a safetensors"),
        (b"hello world, not a model", "not a safetensors"),
        ((10**9).to_bytes(8, "little") + b"{}", "not a safetensors"),  # header longer than the file
        (len(b"{nope").to_bytes(8, "little") + b"{nope", "not valid UTF-8 JSON"),
        (good[: 8 + header_len + 100], "data_offsets outside the file"),  # truncated tensor bytes
    ]:
        r = upload(client, data)
        assert r.status_code == 422 and words in r.json()["detail"][0]["msg"], (data[:20], r.text)
    r = upload(client, good, spec={**SPEC, "architecture": [{"name": "x", "type": "os.system"}]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "spec", "architecture"]
    r = upload(client, good, spec={**SPEC, "training": {"epochs": 3}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "spec", "training"]
    r = client.post("/models/upload", data={"spec": "{not json"}, files={"weights": ("w", good)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "spec"]
    r = client.post("/models/upload", data={"spec": json.dumps(SPEC)})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "weights"]
    assert recorder.ids == []


@pytest.mark.parametrize("size", [64 * 1024])
def test_oversized_upload_is_413(
    engine: Engine, settings: Settings, recorder: EnqueueRecorder, make_client: Any, size: int
) -> None:
    with make_client(max_upload_bytes=size) as client:
        r = upload(client, b"\x00" * (size + 1))
        assert r.status_code == 413 and f"larger than {size} bytes" in r.json()["detail"]
        assert upload(client, st_save(linear_state())).status_code == 202  # a small one passes


def test_upload_for_a_data_set_it_cannot_run_on_is_422(client: TestClient, recorder: EnqueueRecorder) -> None:
    """The weights are fine but the model could never be measured here: mnist is absent (downloads off)."""
    r = upload(client, st_save(linear_state()), spec={**SPEC, "dataset": "mnist"})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "spec", "dataset"] and "not found in the data root" in err["msg"]
    assert recorder.ids == []


def test_a_torchvision_network_uploads_as_safetensors(client: TestClient, settings: Settings) -> None:
    """A whole torchvision network by name (``resnet18``), its weights as safetensors keyed by module paths."""
    import torchvision

    from compress.baseline import resolve_spec
    from compress.layer_spec import build_model

    spec = resolve_spec("resnet18", (1, 8, 8), 10)
    torch.manual_seed(0)
    state = build_model(spec).state_dict()
    assert "layer1.0.conv1.weight" in state  # torchvision's own module paths
    body = {"name": "my resnet18", "architecture": "resnet18", "input_shape": [1, 8, 8], "dataset": "digits"}
    r = upload(client, st_save(state), spec=body)
    assert r.status_code == 202, r.text
    with Session(create_engine_for(settings)) as s:
        base = s.get(BaseModelRow, r.json()["id"])
        assert base is not None and base.artifact_path
    model, stored = load_model(Path(settings.artifact_dir) / base.artifact_path)
    assert stored.network is not None and stored.network.name == "resnet18"
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])
    assert isinstance(model, torchvision.models.ResNet)
    wrong = {k: v for k, v in state.items() if not k.startswith("fc.")}
    bad = upload(client, st_save(wrong), spec=body)
    assert bad.status_code == 422 and "fc.weight" in bad.text


def create_engine_for(settings: Settings) -> Any:
    from store.db import create_engine

    return create_engine(settings.database_url)
