"""orthogonal: QᵀQ = I on every parametrized layer, the stated size convention, the input untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import parametrize

from compress.baseline import Baseline, resolve_spec
from compress.datasets import DatasetSplit
from compress.layer_spec import build_model
from compress.persistence import model_from_bytes, model_to_bytes
from compress.techniques import Context, get_technique
from compress.techniques.orthogonal import (
    AUTO_MAX_ROWS,
    CONVENTION,
    OrthogonalParams,
    householder_params,
    orthogonal_stored_params,
    orthogonality_error,
    orthogonalize,
)

ALL_LAYERS = ["conv1", "conv2", "fc1", "fc2"]


def _tall(weight: torch.Tensor) -> torch.Tensor:
    q = weight.detach().reshape(weight.shape[0], -1)
    return q if q.shape[0] >= q.shape[1] else q.T


def _ctx(digits: DatasetSplit, base: Baseline) -> Context:
    return Context(digits, base.model, base.spec, base.measurement.accuracy)


def test_parametrized_layers_are_orthogonal(digits_baseline: Baseline) -> None:
    model = copy.deepcopy(digits_baseline.model)
    # The trained weights are far from orthogonal, so the check below can fail.
    assert all(orthogonality_error(dict(model.named_modules())[n].weight) > 0.1 for n in ALL_LAYERS)
    torch.manual_seed(0)
    orthogonalize(model, ALL_LAYERS)
    modules = dict(model.named_modules())
    for name in ALL_LAYERS:
        module = modules[name]
        assert parametrize.is_parametrized(module, "weight")
        q = _tall(module.weight)
        assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-5), name
        assert orthogonality_error(module.weight) < 1e-5
    # conv2 (32 x 144) is wide, so its rows are the orthonormal ones.
    w2 = modules["conv2"].weight.reshape(32, -1)
    assert torch.allclose(w2 @ w2.T, torch.eye(32), atol=1e-5)
    # The shapes the network sees do not change.
    assert modules["conv2"].weight.shape == (32, 16, 3, 3)


def test_size_by_stated_convention(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("orthogonal")
    params = OrthogonalParams(layers=["conv1", "fc2"], epochs=1, seed=0)
    variant = tech.apply(digits_baseline.model, digits_baseline.spec, params, _ctx(digits, digits_baseline))
    size = variant.size
    assert size is not None
    # conv1 weight 16 x (1*3*3) = 16 x 9: m=16, n=9 -> 16*10/2 = 80 stored instead of 144.
    # fc2 weight 10 x 64 is wide: m=64, n=10 -> 64*11/2 = 352 stored instead of 640.
    # Dense: conv1 bias 16; conv2 32*16*9 + 32 = 4640; fc1 512*64 + 64 = 32832; fc2 bias 10.
    assert size.n_params == 80 + 16 + 4640 + 32832 + 352 + 10 == 37930
    assert size.bytes == 4 * 37930
    assert size.convention == CONVENTION and "m·(n+1)/2" in size.convention
    assert variant.notes["matrix_m_n"] == {"conv1": [16, 9], "fc2": [64, 10]}
    # Compact Householder storage m*n - n(n-1)/2, recorded beside the convention.
    assert variant.notes["householder_params"] == {"conv1": 144 - 36, "fc2": 640 - 45}
    assert orthogonal_stored_params(9, 4) == 23  # 22.5 rounds up
    assert orthogonal_stored_params(5, 5) == householder_params(5, 5) == 15


def test_apply_leaves_input_untouched_and_bakes(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline.model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tech = get_technique("orthogonal")
    params = OrthogonalParams(top_k=2, epochs=1, seed=3)
    variant = tech.apply(base, digits_baseline.spec, params, _ctx(digits, digits_baseline))

    after = base.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(parametrize.is_parametrized(m) for m in base.modules())

    # top_k=2: the two heaviest layers, fc1 (32768 weights) then conv2 (4608).
    assert variant.notes["orthogonal_layers"] == ["fc1", "conv2"]
    assert all(e < 1e-5 for e in variant.notes["max_orthogonality_error"].values())
    model = variant.model
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert variant.spec == digits_baseline.spec
    modules = dict(model.named_modules())
    for name in ("fc1", "conv2"):
        q = _tall(modules[name].weight)
        assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-5)
    # Fine-tuning moved the weights away from the plain QR projection of the base weights.
    projected = orthogonalize(copy.deepcopy(base), ["fc1"])
    assert not torch.allclose(dict(projected.named_modules())["fc1"].weight, modules["fc1"].weight, atol=1e-4)

    restored, spec = model_from_bytes(model_to_bytes(model, variant.spec))
    x = digits.eval_x[:16]
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))


def test_unknown_layer_lists_valid_names(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("orthogonal")
    with pytest.raises(ValueError, match="fc1, conv2, fc2, conv1"):
        tech.apply(
            digits_baseline.model,
            digits_baseline.spec,
            OrthogonalParams(layers=["relu1"]),
            _ctx(digits, digits_baseline),
        )


def test_frozen_mode_keeps_the_projection_and_trains_the_rest(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline.model
    tech = get_technique("orthogonal")
    params = OrthogonalParams(layers=["fc1"], epochs=1, seed=3, train_orthogonal="no")
    variant = tech.apply(base, digits_baseline.spec, params, _ctx(digits, digits_baseline))
    modules = dict(variant.model.named_modules())
    projected = dict(orthogonalize(copy.deepcopy(base), ["fc1"]).named_modules())["fc1"].weight.detach()
    assert torch.allclose(modules["fc1"].weight, projected, atol=1e-6)  # frozen at the QR projection
    q = _tall(modules["fc1"].weight)
    assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-5)
    assert not torch.equal(modules["fc2"].weight, base.fc2.weight)  # the rest was fine-tuned
    assert not torch.equal(modules["fc1"].bias, base.fc1.bias)
    assert all(p.requires_grad for p in variant.model.parameters())
    assert variant.notes["orthogonal_weights_trained"] is False


def test_auto_mode_freezes_only_tall_matrices(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("orthogonal")
    small = tech.apply(
        digits_baseline.model,
        digits_baseline.spec,
        OrthogonalParams(layers=["fc1"], epochs=0),
        _ctx(digits, digits_baseline),
    )
    assert small.notes["orthogonal_weights_trained"] is True  # 512 rows: trained through the parametrization
    wide = [
        {"name": "flat", "type": "Flatten"},
        {"name": "up", "type": "Linear", "args": {"in_features": 64, "out_features": AUTO_MAX_ROWS + 52}},
        {"name": "act", "type": "ReLU"},
        {"name": "out", "type": "Linear", "args": {"in_features": AUTO_MAX_ROWS + 52, "out_features": 10}},
    ]
    spec = resolve_spec(wide, (1, 8, 8), 10)
    model = build_model(spec)
    ctx = Context(digits.subset(128, 64), model, spec, None)
    tall = tech.apply(model, spec, OrthogonalParams(layers=["up"], epochs=1, batch_size=64), ctx)
    assert tall.notes["orthogonal_weights_trained"] is False  # 2100 x 64: projected once and frozen
    q = _tall(dict(tall.model.named_modules())["up"].weight)
    assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-5)
