"""POST /models refuses a too-large network before building it (sizes found on the meta device)."""

from __future__ import annotations

import resource
from typing import Any

from fastapi.testclient import TestClient

from api.spec_limits import count_layers, footprint
from compress.baseline import resolve_spec
from compress.layer_spec import ModelSpec, build_model
from tests.api.conftest import EnqueueRecorder


def post(client: TestClient, layers: Any, shape: list[int]) -> Any:
    return client.post("/models", json={"name": "big", "architecture": layers, "input_shape": shape})


def test_footprint_matches_the_real_model() -> None:
    spec = resolve_spec("digits-cnn", (1, 8, 8), 10)
    fp = footprint(spec)
    real = build_model(spec)
    assert fp.params == sum(p.numel() for p in real.parameters())
    assert fp.largest_output_elements >= 64  # the input (1x8x8) at least
    nested = ModelSpec.model_validate(
        {
            "input_shape": [1, 8, 8],
            "num_classes": 10,
            "layers": [
                {"name": "f", "type": "Flatten"},
                {
                    "name": "s",
                    "type": "Sequential",
                    "layers": [{"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}}],
                },
            ],
        }
    )
    assert footprint(nested).params == 650 and footprint(nested).largest_layer == "s.fc"
    assert count_layers(nested.model_dump()["layers"]) == 3


def test_huge_layers_are_refused_without_allocating(client: TestClient, recorder: EnqueueRecorder) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    huge = [
        {"name": "f", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 1_000_000}},
        {"name": "out", "type": "Linear", "args": {"in_features": 1_000_000, "out_features": 1_000_000}},
    ]  # 10^12 parameters: 4 TB if it were built
    r = post(client, huge, [1, 8, 8])
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["type"] == "spec_too_large" and "largest layer 'out'" in err["msg"] and "MAX_MODEL_PARAMS" in err["msg"]
    wide = [
        {"name": "c", "type": "Conv2d", "args": {"in_channels": 3, "out_channels": 4096, "kernel_size": 1}},
        {"name": "p", "type": "AdaptiveAvgPool2d", "args": {"output_size": 1}},
        {"name": "f", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 4096, "out_features": 10}},
    ]  # few parameters, but 4096 x 2048 x 2048 activations per sample
    r = post(client, wide, [3, 2048, 2048])
    assert r.status_code == 422 and "layer 'c' would output" in r.json()["detail"][0]["msg"]
    many = [{"name": f"r{i}", "type": "ReLU"} for i in range(300)]
    r = post(client, many, [1, 8, 8])
    assert r.status_code == 422 and "300 layers" in r.json()["detail"][0]["msg"]
    r = post(client, huge, [1, 8, 5000])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "input_shape"]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb
    assert recorder.ids == []


def test_limits_come_from_settings(make_client: Any) -> None:
    layers = [
        {"name": "f", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
    ]
    with make_client(max_model_params=600) as client:
        r = post(client, layers, [1, 8, 8])
        assert r.status_code == 422 and "650 parameters" in r.json()["detail"][0]["msg"]
    with make_client(max_model_params=650, max_spec_layers=2) as client:
        assert post(client, layers, [1, 8, 8]).status_code == 202
