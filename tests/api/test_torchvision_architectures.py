"""torchvision networks through the API: listed, uploadable as safetensors, and refused at POST /jobs with reasons."""

from __future__ import annotations

import json
import uuid

import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as st_save
from sqlalchemy.engine import Engine
from sqlmodel import Session

from compress.baseline import resolve_spec
from compress.layer_spec import build_model
from store.tables import BaseModelRow, utcnow
from tests.api.conftest import EnqueueRecorder


def _seed(engine: Engine, architecture: str) -> str:
    mid = f"m-tv-{uuid.uuid4().hex[:8]}"
    with Session(engine) as s:
        s.add(
            BaseModelRow(
                id=mid,
                name=architecture,
                architecture=architecture,
                input_shape=[3, 32, 32],
                num_classes=10,
                dataset="digits",
                training={"epochs": 1},
                status="ready",
                created_at=utcnow(),
            )
        )
        s.commit()
    return mid


def _post(client: TestClient, model_id: str, technique: str, params: dict) -> dict:
    r = client.post("/jobs", json={"base_model_id": model_id, "technique": technique, "params": params})
    return {"status": r.status_code, "body": r.json()}


def test_architectures_lists_the_torchvision_networks(client: TestClient) -> None:
    body = client.get("/architectures").json()
    by_name = {a["name"]: a for a in body["architectures"]}
    for name in ("resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "vgg11_bn"):
        assert by_name[name]["network"] == {"name": name, "args": {"num_classes": 10}}
        assert by_name[name]["layers"] == [] and by_name[name]["input_shape"] == [3, 32, 32]
    assert by_name["digits-cnn"]["network"] is None and by_name["digits-cnn"]["layers"]
    assert body["networks"][:2] == ["resnet18", "resnet50"]


def test_every_technique_is_accepted_or_refused_with_its_reason(
    client: TestClient, engine: Engine, recorder: EnqueueRecorder
) -> None:
    resnet, mobilenet = _seed(engine, "resnet18"), _seed(engine, "mobilenet_v2")
    narrow = _post(client, resnet, "narrow", {"width": 0.5})
    assert narrow["status"] == 422
    assert "resnet18 has no width multiplier; networks with one: mobilenet_v2" in narrow["body"]["detail"][0]["msg"]
    assert _post(client, mobilenet, "narrow", {"width": 0.5})["status"] == 202
    classifier = _post(client, resnet, "prune-channels", {"amount": {"fc": 0.5}, "mode": "remove"})
    assert classifier["status"] == 422
    (err,) = classifier["body"]["detail"]
    assert err["loc"] == ["body", "params", "amount"] and "layer1.0.conv1" in err["valid"] and "fc" not in err["valid"]
    depthwise = _post(client, mobilenet, "separable", {"layers": ["features.1.conv.0.0"]})
    assert depthwise["status"] == 422 and "features.0.0" in depthwise["body"]["detail"][0]["valid"]
    for technique, params in [
        ("prune-channels", {"amount": {"layer1.0.conv1": 0.5}, "mode": "remove"}),
        ("prune-channels", {"amount": 0.5, "mode": "mask"}),
        ("separable", {"layers": ["layer1.0.conv1"]}),
        ("orthogonal", {"layers": ["layer2.0.conv1"]}),
        ("prune-l1", {"layers": ["layer4.1.conv2"], "amount": 0.5}),
    ]:
        assert _post(client, resnet, technique, params)["status"] == 202, (technique, params)
    unknown = _post(client, resnet, "orthogonal", {"layers": ["net.conv1"]})
    assert unknown["status"] == 422 and "layer1.0.conv1" in unknown["body"]["detail"][0]["valid"]


def test_a_torchvision_network_is_uploaded_as_safetensors(client: TestClient, recorder: EnqueueRecorder) -> None:
    spec = resolve_spec("mobilenet_v3_small", (1, 8, 8), 10)
    torch.manual_seed(0)
    state = build_model(spec).state_dict()
    form = {"name": "uploaded mobilenet", "architecture": "mobilenet_v3_small", "input_shape": [1, 8, 8]}
    files = {"weights": ("w.safetensors", st_save(state), "application/octet-stream")}
    r = client.post("/models/upload", data={"spec": json.dumps({**form, "dataset": "digits"})}, files=files)
    assert r.status_code == 202, r.text
    wrong = {k: v for k, v in state.items() if k != "features.0.0.weight"}
    files = {"weights": ("w.safetensors", st_save(wrong), "application/octet-stream")}
    r = client.post("/models/upload", data={"spec": json.dumps({**form, "dataset": "digits"})}, files=files)
    assert r.status_code == 422 and "features.0.0.weight" in r.text
