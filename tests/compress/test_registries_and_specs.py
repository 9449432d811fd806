from __future__ import annotations

import pytest
import torch

from compress.architectures import get_architecture, list_architectures
from compress.baseline import resolve_spec
from compress.datasets import DATASETS, load_dataset
from compress.layer_spec import ModelSpec, SpecError, build_model, refit_inputs
from compress.registry import UnknownNameError


def test_architecture_registry_lists_builtins_and_rejects_unknown() -> None:
    names = [a.name for a in list_architectures()]
    assert names[:4] == ["digits-cnn", "mnist-cnn", "lenet5", "resnet18"]
    with pytest.raises(UnknownNameError) as err:
        get_architecture("vgg99")
    assert "vgg99" in str(err.value) and "digits-cnn" in str(err.value) and "resnet18" in str(err.value)


def test_dataset_registry_lists_sources_and_rejects_unknown() -> None:
    assert {"digits", "mnist", "fashion-mnist", "cifar10", "idx", "npz"} <= set(DATASETS.names())
    with pytest.raises(UnknownNameError, match="valid: digits"):
        load_dataset("imagenet")


def test_mnist_cnn_is_deep_and_heaviest_in_one_linear_layer() -> None:
    model = build_model(get_architecture("mnist-cnn").spec())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    total = sum(p.numel() for p in model.parameters())
    assert len(convs) >= 3 and len(linears) >= 2 and total >= 1_000_000
    assert model.fc1.weight.numel() > total / 2


def test_builtins_are_named_sequentials_with_zero_padding() -> None:
    for arch in list_architectures():
        model = build_model(arch.spec())
        assert isinstance(model, torch.nn.Sequential) != bool(arch.network)  # torchvision networks are whole
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                assert m.padding_mode == "zeros"


def _spec(layers: list[dict], shape=(1, 8, 8), classes=10) -> ModelSpec:
    return resolve_spec(layers, shape, classes)


GOOD = [
    {"name": "conv1", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 4, "kernel_size": 3}},
    {"name": "act", "type": "ReLU"},
    {"name": "flat", "type": "Flatten"},
    {"name": "fc", "type": "Linear", "args": {"in_features": 144, "out_features": 10}},
]


def test_custom_spec_builds_a_named_sequential() -> None:
    model = build_model(_spec(GOOD))
    assert [n for n, _ in model.named_children()] == ["conv1", "act", "flat", "fc"]
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({0: {"type": "Conv3d"}}, "layer 'conv1': type 'Conv3d' is not allowed"),
        ({0: {"args": {**GOOD[0]["args"], "padding_mode": "replicate"}}}, "padding_mode 'replicate'"),
        ({1: {"name": "conv1"}}, "layer 'conv1': duplicate name"),
        ({1: {"name": "bad name"}}, "name must be a Python identifier"),
        ({0: {"args": {"in_channels": 1, "kernel_size": 3}}}, "layer 'conv1' (Conv2d): bad arguments"),
        ({3: {"args": {"in_features": 100, "out_features": 10}}}, "layer 'fc' (Linear) cannot take input"),
        ({3: {"args": {"in_features": 144, "out_features": 7}}}, "outputs shape (7,)"),
        ({0: {"type": "__import__"}}, "type '__import__' is not allowed"),
        ({1: {"args": {"inplace": {"x": 1}}}}, "must be a JSON number"),
    ],
)
def test_custom_spec_rejections_name_the_layer(change: dict, message: str) -> None:
    layers = [dict(layer) for layer in GOOD]
    for i, upd in change.items():
        layers[i] = {**layers[i], **upd}
    with pytest.raises(SpecError) as err:
        _spec(layers)
    assert message in str(err.value)


def test_spec_json_round_trip_rebuilds_same_structure() -> None:
    spec = get_architecture("mnist-cnn").spec()
    again = ModelSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert str(build_model(again)) == str(build_model(spec))


def test_refit_inputs_follows_a_changed_width() -> None:
    spec = get_architecture("mnist-cnn").spec()
    layers = [layer.model_copy(deep=True) for layer in spec.layers]
    layers[0].args["out_channels"] = 8  # conv1 32 -> 8
    fitted = refit_inputs(layers, spec.input_shape)
    by_name = {layer.name: layer for layer in fitted}
    assert by_name["bn1"].args["num_features"] == 8
    assert by_name["conv2"].args["in_channels"] == 8
    assert by_name["fc1"].args["in_features"] == 128 * 7 * 7
