"""prune-channels: masked channels are zero, removed channels give the same function in a smaller net."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from compress.baseline import Baseline, resolve_spec
from compress.datasets import DatasetSplit
from compress.layer_spec import ModelSpec, build_model, find_layer
from compress.persistence import model_from_bytes, model_to_bytes
from compress.runner import Runner, Step
from compress.techniques.base import Context, Variant, get_technique
from compress.techniques.prune_channels import PruneChannelsParams, plan_channels


def _apply(model: nn.Module, spec: ModelSpec, data: DatasetSplit, **params: object) -> Variant:
    tech = get_technique("prune-channels")
    return tech.apply(model, spec, tech.params_model(**params), Context(data, model, spec))


def _zero_rows(w: torch.Tensor) -> set[int]:
    return {i for i in range(w.shape[0]) if not w[i].any()}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def mnist_cnn_untrained() -> tuple[nn.Module, ModelSpec]:
    """mnist-cnn with random BatchNorm statistics and affine terms, so that BN really shifts channels."""
    spec = resolve_spec("mnist-cnn")
    torch.manual_seed(0)
    model = build_model(spec)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval(), spec


def test_mask_zeroes_the_weakest_whole_channels(digits, digits_baseline: Baseline):
    base = digits_baseline.model
    before = {k: v.clone() for k, v in base.state_dict().items()}
    v = _apply(base, digits_baseline.spec, digits, amount=0.5, epochs=0)
    for name, n in (("conv1", 16), ("conv2", 32), ("fc1", 64)):
        w, b = v.model.get_submodule(name).weight, v.model.get_submodule(name).bias
        assert w.shape[0] == n  # same shapes
        zero = _zero_rows(w)
        norms = base.get_submodule(name).weight.detach().flatten(1).norm(dim=1)
        assert zero == set(norms.argsort()[: n // 2].tolist()), name  # the smallest L2 norms
        assert all(b[i] == 0 for i in zero) and all(b[i] != 0 for i in range(n) if i not in zero)
        kept = [i for i in range(n) if i not in zero]
        assert torch.equal(w[kept], base.get_submodule(name).weight[kept])  # survivors untouched
    assert _zero_rows(v.model.fc2.weight) == set() and v.model.fc2.out_features == 10
    assert v.notes["channels"] == {"conv1": "16 → 8", "conv2": "32 → 16", "fc1": "64 → 32"}
    assert v.spec == digits_baseline.spec
    for k, t in base.state_dict().items():
        assert torch.equal(t, before[k]), k


def test_mask_finetune_keeps_the_channels_zero(digits, digits_baseline: Baseline):
    v = _apply(digits_baseline.model, digits_baseline.spec, digits, amount=0.5, epochs=1)
    untuned = _apply(digits_baseline.model, digits_baseline.spec, digits, amount=0.5, epochs=0)
    for name in ("conv1", "conv2", "fc1"):
        assert _zero_rows(v.model.get_submodule(name).weight) == _zero_rows(untuned.model.get_submodule(name).weight)
    assert not torch.equal(v.model.fc1.weight, untuned.model.fc1.weight)
    assert not any(k.endswith(("_orig", "_mask")) for k in v.model.state_dict())


def test_remove_is_the_mask_model_made_smaller_on_digits_cnn(digits, digits_baseline: Baseline):
    spec = digits_baseline.spec
    masked = _apply(digits_baseline.model, spec, digits, amount=0.5, epochs=0)
    removed = _apply(digits_baseline.model, spec, digits, amount=0.5, epochs=0, mode="remove")
    # conv1 1->8, conv2 8->16, fc1 16*4*4->32, fc2 32->10 (weights + biases)
    assert _n_params(removed.model) == (8 * 9 + 8) + (16 * 8 * 9 + 16) + (256 * 32 + 32) + (32 * 10 + 10)
    assert _n_params(removed.model) < _n_params(digits_baseline.model)
    assert find_layer(removed.spec.layers, "fc1").args["in_features"] == 256
    assert find_layer(removed.spec.layers, "fc2").args["out_features"] == 10
    x = digits.eval_x[:32]
    out_removed, out_masked = removed.model(x), masked.model(x)
    assert out_removed.shape == (32, 10)
    torch.testing.assert_close(out_removed, out_masked, atol=1e-5, rtol=1e-5)
    assert (out_masked - digits_baseline.model(x)).abs().max() > 0.1  # pruning did change the function


def test_remove_handles_batchnorm_and_flatten_on_mnist_cnn(digits, mnist_cnn_untrained):
    model, spec = mnist_cnn_untrained
    masked = _apply(model, spec, digits, amount=0.5, epochs=0)
    removed = _apply(model, spec, digits, amount=0.5, epochs=0, mode="remove")
    small = removed.model
    assert small.bn2.num_features == 32 and small.bn2.running_var.shape == (32,)
    assert small.fc1.in_features == 64 * 7 * 7 and small.fc2.out_features == 10
    # conv1 16x1x9, bn1 2x16, conv2 32x16x9, bn2 2x32, conv3 64x32x9, bn3 2x64, fc1 3136x128+128, fc2 128x10+10
    assert _n_params(small) == 144 + 32 + 4608 + 64 + 18432 + 128 + 401536 + 1290
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_removed, out_masked, out_base = small(x), masked.model(x), model(x)
    assert out_removed.shape == out_base.shape == (8, 10)
    torch.testing.assert_close(out_removed, out_masked, atol=1e-5, rtol=1e-5)
    assert (out_masked - out_base).abs().max() > 1e-2
    # the BN affine terms of masked channels are zeroed too, so those channels output exactly zero
    zero = _zero_rows(masked.model.conv2.weight)
    assert len(zero) == 32 and all(masked.model.bn2.bias[i] == 0 for i in zero)


def test_removed_model_round_trips_through_persistence(digits, mnist_cnn_untrained):
    model, spec = mnist_cnn_untrained
    removed = _apply(model, spec, digits, amount={"conv2": 0.25, "fc1": 0.5}, epochs=0, mode="remove")
    assert removed.notes["channels"] == {"conv2": "64 → 48", "fc1": "256 → 128"}
    loaded, loaded_spec = model_from_bytes(model_to_bytes(removed.model, removed.spec))
    assert loaded_spec == removed.spec
    assert find_layer(loaded_spec.layers, "conv2").args["out_channels"] == 48
    assert find_layer(loaded_spec.layers, "bn2").args["num_features"] == 48
    assert find_layer(loaded_spec.layers, "conv3").args["in_channels"] == 48
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), removed.model(x))


def test_remove_with_finetune_trains_the_smaller_network(digits, digits_baseline: Baseline):
    results = Runner(Context(digits, digits_baseline.model, digits_baseline.spec), latency_runs=2).run(
        [Step(technique="prune-channels", params={"amount": 0.5, "mode": "remove", "epochs": 1})],
        digits_baseline.model,
        digits_baseline.spec,
    )
    row = results[0].row
    base = digits_baseline.measurement
    assert row.measurement.n_params == 9802 and base.n_params == 38282
    assert row.measurement.macs < 0.3 * base.macs
    assert row.measurement.accuracy > 80
    assert results[0].spec.layers[0].args["out_channels"] == 8


def test_amount_close_to_one_keeps_one_channel(digits, digits_baseline: Baseline):
    v = _apply(digits_baseline.model, digits_baseline.spec, digits, amount=0.99, epochs=0, mode="remove")
    assert v.model.conv1.out_channels == 1 and v.model.fc1.out_features == 1
    assert v.notes["kept_one_channel"] == ["conv1", "conv2"]  # fc1: round(0.99 * 64) = 63 leaves one anyway
    assert v.model(digits.eval_x[:2]).shape == (2, 10)


def test_per_layer_dict_checks_names(digits, digits_baseline: Baseline):
    v = _apply(digits_baseline.model, digits_baseline.spec, digits, amount={"conv2": 0.25}, epochs=0)
    assert len(_zero_rows(v.model.conv2.weight)) == 8 and not _zero_rows(v.model.conv1.weight)
    with pytest.raises(ValueError, match=r"\['conv9'\].*conv1, conv2, fc1"):
        _apply(digits_baseline.model, digits_baseline.spec, digits, amount={"conv9": 0.5})
    with pytest.raises(ValueError, match="fc2: it is the final classifier"):
        _apply(digits_baseline.model, digits_baseline.spec, digits, amount={"fc2": 0.5})


def test_plan_skips_single_outputs_and_non_zero_preserving_paths():
    spec = resolve_spec(
        [
            {"name": "a", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": 3}},
            {"name": "sig", "type": "Sigmoid"},
            {"name": "b", "type": "Conv2d", "args": {"in_channels": 4, "out_channels": 1, "kernel_size": 3}},
            {"name": "relu", "type": "ReLU"},
            {"name": "c", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 6, "kernel_size": 1}},
            {"name": "flat", "type": "Flatten"},
            {"name": "bn", "type": "BatchNorm1d", "args": {"num_features": 96}},
            {"name": "fc", "type": "Linear", "args": {"in_features": 96, "out_features": 3}},
        ],
        (1, 8, 8),
    )
    plan = plan_channels(build_model(spec), spec)
    assert list(plan.links) == ["c"]
    assert plan.links["c"].norms == [("bn", 16)] and plan.links["c"].consumer == "fc"
    assert "Sigmoid" in plan.skipped["a"]
    assert plan.skipped["b"] == "it has a single output"
    assert "classifier" in plan.skipped["fc"]


def test_remove_slices_a_batchnorm1d_after_flatten(digits):
    spec = resolve_spec(
        [
            {"name": "c", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 6, "kernel_size": 3}},
            {"name": "flat", "type": "Flatten"},
            {"name": "bn", "type": "BatchNorm1d", "args": {"num_features": 216}},
            {"name": "fc", "type": "Linear", "args": {"in_features": 216, "out_features": 3}},
        ],
        (1, 8, 8),
    )
    torch.manual_seed(0)
    model = build_model(spec).eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.bias.uniform_(-1, 1)
    masked = _apply(model, spec, digits, amount=0.5, epochs=0)  # no training: the data is not used
    removed = _apply(model, spec, digits, amount=0.5, epochs=0, mode="remove")
    assert removed.model.bn.num_features == 3 * 36 and removed.model.fc.in_features == 108
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(removed.model(x), masked.model(x), atol=1e-5, rtol=1e-5)


def test_torchvision_networks_go_through_the_dependency_graph():
    spec = resolve_spec("resnet18", (1, 8, 8), 10)
    x = torch.randn(8, 1, 8, 8)
    data = DatasetSplit("synthetic", x, torch.arange(8) % 10, x, torch.arange(8) % 10, 10, (0.0,), (1.0,))
    v = _apply(build_model(spec), spec, data, amount=0.5, epochs=0, mode="remove")
    assert v.notes["planner"] == "torch-pruning" and v.model.layer1[0].conv1.out_channels == 32


def test_params_are_checked():
    with pytest.raises(ValidationError):
        PruneChannelsParams(amount=1.0)
    with pytest.raises(ValidationError):
        PruneChannelsParams(amount={"conv1": -0.1})
    with pytest.raises(ValidationError):
        PruneChannelsParams(mode="delete")
    with pytest.raises(ValidationError, match="search"):
        PruneChannelsParams(search=True, amount={"conv1": 0.5})
    assert PruneChannelsParams().epochs == 1
    for name, field in PruneChannelsParams.model_fields.items():
        assert field.description, name


def test_search_chooses_the_strongest_passing_amount(digits, digits_baseline: Baseline):
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, digits_baseline.measurement.accuracy)
    steps = [Step(technique="prune-channels", params={"search": True, "mode": "remove", "epochs": 0, "seed": 0})]
    results = Runner(ctx, latency_runs=2).run(steps, digits_baseline.model, digits_baseline.spec)
    chosen = [r for r in results if not r.row.trial]
    assert len(chosen) == 1
    best = chosen[0]
    passing = [r for r in results if r.row.accuracy_drop <= 1.0]
    assert best.row.accuracy_drop <= 1.0
    assert best.row.strength == max(r.row.strength for r in passing)
    assert any(r.row.accuracy_drop > 1.0 for r in results)
    assert len(results) > 2
    assert best.model is not None and best.row.measurement.n_params < digits_baseline.measurement.n_params
    assert best.row.params["amount"] == pytest.approx(best.row.strength, abs=1e-4)
