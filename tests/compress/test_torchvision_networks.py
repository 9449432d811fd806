"""Whole torchvision networks: built by name, reduced by every technique, reloaded from safetensors."""

from __future__ import annotations

import onnxruntime
import pytest
import torch
from torch import nn

from compress.architectures import get_architecture
from compress.baseline import resolve_spec, train_baseline
from compress.datasets import DatasetSplit
from compress.export_onnx import export_onnx
from compress.layer_spec import TORCHVISION_NETWORKS, ModelSpec, SpecError, build_model
from compress.ops_count import count_ops, flop_counter_flops
from compress.persistence import model_from_bytes, model_to_bytes
from compress.techniques.base import Context, Variant, get_technique
from compress.training import TrainConfig

SMALL = ("resnet18", "mobilenet_v2")


def _data(shape: tuple[int, ...], n: int = 8) -> DatasetSplit:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DatasetSplit("synthetic", x, y, x[:4], y[:4], 10, (0.0,), (1.0,))


def _net(name: str, shape: tuple[int, int, int] = (3, 32, 32)) -> tuple[nn.Module, ModelSpec, DatasetSplit]:
    spec = resolve_spec(name, shape, 10)
    torch.manual_seed(0)
    return build_model(spec).eval(), spec, _data(shape)


def _apply(name: str, technique: str, **params: object) -> tuple[Variant, DatasetSplit, nn.Module]:
    model, spec, data = _net(name)
    tech = get_technique(technique)
    variant = tech.apply(model, spec, tech.params_model(**params), Context(data, model, spec))
    assert isinstance(variant, Variant)
    return variant, data, model


def _reloads(variant: Variant, data: DatasetSplit) -> nn.Module:
    loaded, spec = model_from_bytes(model_to_bytes(variant.model, variant.spec))
    assert spec == variant.spec
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(data.eval_x), variant.model.eval()(data.eval_x))
    return loaded


@pytest.mark.parametrize("name", [n for n in TORCHVISION_NETWORKS if n != "vgg11_bn"])
def test_builds_by_name_and_reloads(name: str) -> None:
    model, spec, data = _net(name)
    assert spec.network is not None and spec.network.name == name and spec.layers == []
    assert model(data.eval_x).shape == (4, 10)
    _reloads(Variant(model, spec), data)


def test_layer_names_are_module_paths_and_stem_takes_the_input_channels() -> None:
    model, spec, data = _net("resnet18", (1, 28, 28))
    assert model.get_submodule("layer1.0.conv1").weight.shape == (64, 64, 3, 3)
    assert model.conv1.in_channels == 1 and model(data.eval_x).shape == (4, 10)
    assert get_architecture("resnet18").spec().network.args == {"num_classes": 10}  # type: ignore[union-attr]


def test_bad_arguments_and_unknown_networks_are_spec_errors() -> None:
    bad = {"input_shape": [3, 32, 32], "num_classes": 10, "network": {"name": "resnet18", "args": {"x": [1]}}}
    with pytest.raises(SpecError, match="argument 'x' must be a JSON number"):
        build_model(ModelSpec.model_validate(bad))
    spec = ModelSpec.model_validate(
        {"input_shape": [3, 32, 32], "num_classes": 10, "network": {"name": "vit_b_16", "args": {}}}
    )
    with pytest.raises(SpecError, match="allowed networks: resnet18"):
        build_model(spec)


@pytest.mark.parametrize("name", SMALL)
def test_prune_channels_remove_gives_a_smaller_network_that_reloads(name: str) -> None:
    variant, data, model = _apply(name, "prune-channels", amount=0.5, mode="remove", epochs=0)
    small = sum(p.numel() for p in variant.model.parameters())
    assert small < 0.5 * sum(p.numel() for p in model.parameters())
    assert variant.spec.transforms[-1]["kind"] == "prune-channels"
    fc = variant.model.get_submodule("fc" if name == "resnet18" else "classifier.1")
    assert fc.out_features == 10
    loaded = _reloads(variant, data)
    assert sum(p.numel() for p in loaded.parameters()) == small


@pytest.mark.parametrize("name", SMALL)
def test_prune_channels_mask_keeps_shapes_and_zeroes_channels(name: str) -> None:
    variant, data, model = _apply(name, "prune-channels", amount=0.5, mode="mask", epochs=1, batch_size=4)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in variant.model.state_dict().items()} == shapes
    conv = variant.model.get_submodule("layer1.0.conv1" if name == "resnet18" else "features.1.conv.0.0")
    zero = (conv.weight.flatten(1).abs().sum(1) == 0).sum()
    assert zero == conv.out_channels // 2
    assert variant.notes["channels"]
    _reloads(variant, data)


def test_prune_channels_per_layer_amount_and_unknown_layer() -> None:
    variant, data, _ = _apply("resnet18", "prune-channels", amount={"layer1.0.conv1": 0.25}, mode="remove", epochs=0)
    assert variant.model.get_submodule("layer1.0.conv1").out_channels == 48
    assert variant.model.get_submodule("layer1.0.conv2").in_channels == 48
    with pytest.raises(ValueError, match="layers whose channels can be pruned"):
        _apply("resnet18", "prune-channels", amount={"fc": 0.5})


@pytest.mark.parametrize("name", SMALL)
def test_separable_splits_the_heaviest_inner_conv_and_reloads(name: str) -> None:
    variant, data, model = _apply(name, "separable", top_k=2, epochs=0)
    layers = variant.notes["separable_layers"]
    eligible = [
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size[0] > 1
    ]
    eligible.sort(key=lambda n: -model.get_submodule(n).weight.numel())
    assert layers == eligible[:2] and all("." in n for n in layers)  # mobilenet_v2: only its stem is k×k, groups 1
    assert variant.model.get_submodule(f"{layers[0]}.h").kernel_size == (1, 3)
    assert variant.spec.transforms[-1] == {"kind": "separable", "ranks": variant.notes["rank"]}
    _reloads(variant, data)


def test_separable_refuses_a_depthwise_conv_by_name() -> None:
    model, spec, _ = _net("mobilenet_v2")
    tech = get_technique("separable")
    with pytest.raises(ValueError, match="features.1.conv.0.0"):
        tech.check_params_against(spec, tech.params_model(layers=["features.1.conv.0.0"]))  # type: ignore[misc]


@pytest.mark.parametrize("name", SMALL)
def test_orthogonal_on_a_named_inner_layer_reloads(name: str) -> None:
    layer = "layer2.0.conv1" if name == "resnet18" else "features.3.conv.1.0"
    variant, data, _ = _apply(name, "orthogonal", layers=[layer], epochs=0)
    w = variant.model.get_submodule(layer).weight.flatten(1)
    rows = min(w.shape)
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    torch.testing.assert_close(gram, torch.eye(rows), atol=1e-4, rtol=1e-4)
    _reloads(variant, data)


@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_l1_reaches_every_inner_conv(name: str, scope: str) -> None:
    variant, data, model = _apply(name, "prune-l1", amount=0.5, scope=scope, epochs=0)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    zeros = sum(int((variant.model.get_submodule(n).weight == 0).sum()) for n in convs)
    total = sum(model.get_submodule(n).weight.numel() for n in convs)
    assert zeros == pytest.approx(total / 2, rel=0.01)
    _reloads(variant, data)


def test_narrow_uses_mobilenets_width_multiplier_and_refuses_resnet() -> None:
    variant, data, model = _apply("mobilenet_v2", "narrow", width=0.5, epochs=1, batch_size=4)
    assert variant.spec.network.args["width_mult"] == 0.5  # type: ignore[union-attr]
    assert variant.model.features[0][0].out_channels == 16 and model.features[0][0].out_channels == 32
    _reloads(variant, data)
    _, spec, _ = _net("resnet18")
    tech = get_technique("narrow")
    with pytest.raises(ValueError, match="resnet18 has no width multiplier; networks with one: mobilenet_v2"):
        tech.check_params_against(spec, tech.params_model())  # type: ignore[misc]


@pytest.mark.parametrize("name", TORCHVISION_NETWORKS)
def test_macs_are_flop_counter_mode_over_two_and_other_ops_have_module_paths(name: str) -> None:
    model, spec, _ = _net(name)
    report = count_ops(model, spec.input_shape)
    assert report.macs == flop_counter_flops(model, spec.input_shape) // 2
    rows = {r.name: r for r in report.layers}
    assert report.other_ops == sum(r.other_ops for r in report.layers) > 0
    assert report.activation_ops == sum(r.activation_ops for r in report.layers) > 0
    if name == "resnet18":  # 64 channels × 8×8 after the stem and max-pool: one add per element
        assert (rows["layer1.0"].type, rows["layer1.0"].other_ops, rows["layer1.0"].macs) == ("BasicBlock", 4096, 0)
        assert rows["bn1"].other_ops == 64 * 16 * 16 and rows["maxpool"].other_ops == 64 * 8 * 8 * 9
    if name == "efficientnet_b0":  # squeeze-excitation scales each of 32 × 16×16 elements
        assert rows["features.1.0.block.1"].other_ops == 32 * 16 * 16


def test_sequential_models_keep_their_macs_and_activation_ops() -> None:
    spec = resolve_spec("digits-cnn")
    report = count_ops(build_model(spec), spec.input_shape)
    assert (report.macs, report.activation_ops, report.other_ops) == (337536, 3136, 32 * 4 * 4 * 4)


@pytest.mark.parametrize("technique", ["prune-channels", "separable"])
def test_structural_variants_of_a_network_export_to_onnx(technique: str) -> None:
    variant, data, _ = _apply("resnet18", technique, epochs=0)
    exported = export_onnx(variant.model, variant.spec)
    session = onnxruntime.InferenceSession(exported.data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: data.eval_x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), variant.model(data.eval_x), atol=1e-4, rtol=1e-4)


def test_a_network_base_model_trains_measures_and_reloads() -> None:
    spec = resolve_spec("mobilenet_v3_small", (1, 28, 28), 10)
    data = _data((1, 28, 28), n=16)
    base = train_baseline(spec, data, TrainConfig(epochs=1, batch_size=8), latency_runs=1)
    assert base.measurement.other_ops > 0 and base.measurement.accuracy is not None
    assert any(r.name == "features.1.block.1" and r.other_ops for r in base.measurement.layers)
    _reloads(Variant(base.model.eval(), base.spec), data)
