"""Layer argument rules: every value PyTorch would accept and later fail on is a SpecError naming the
layer and the argument, before anything is built (on the meta device too, where shapes are computed)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from compress.architectures import list_architectures
from compress.baseline import resolve_spec
from compress.layer_spec import ModelSpec, SpecError, build_model, refit_inputs
from compress.spec_checks import arg_problem

CONV = {"in_channels": 1, "out_channels": 4, "kernel_size": 3}


def _refused(layers: list[dict[str, Any]], message: str, shape: tuple[int, int, int] = (1, 8, 8)) -> None:
    for meta in (False, True):  # the API resolves on the meta device first
        with pytest.raises(SpecError) as err:
            if meta:
                with torch.device("meta"):
                    resolve_spec(layers, shape, None)
            else:
                resolve_spec(layers, shape, None)
        assert message in str(err.value), str(err.value)


def _net(*layers: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *layers,
        {"name": "flat", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}},
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"stride": 0},
            "layer 'conv1' (Conv2d): argument 'stride' must be an integer from 1 to 2147483647 "
            "(or a pair of them); got 0",
        ),
        ({"stride": [1, 0]}, "argument 'stride' must be an integer from 1"),
        ({"stride": [1, 1, 1]}, "(or a pair of them); got [1, 1, 1]"),
        ({"stride": True}, "argument 'stride' must be an integer from 1"),
        ({"stride": 1.5}, "got 1.5"),
        ({"kernel_size": 0}, "argument 'kernel_size' must be an integer from 1"),
        ({"dilation": -1}, "argument 'dilation' must be"),
        ({"groups": 0}, "argument 'groups' must be"),
        ({"out_channels": 0}, "argument 'out_channels' must be"),
        ({"in_channels": False}, "argument 'in_channels' must be"),
        (
            {"padding": -1},
            "argument 'padding' must be an integer from 0 to 2147483647 (or a pair of them), "
            "or 'same' or 'valid'; got -1",
        ),
        ({"padding": "around"}, "argument 'padding' must be"),
        ({"bias": "yes"}, "argument 'bias' must be true or false"),
        ({"stride": 2**40}, "got 1099511627776"),
    ],
)
def test_conv_arguments(args: dict[str, Any], message: str) -> None:
    _refused(_net({"name": "conv1", "type": "Conv2d", "args": {**CONV, "padding": 1, **args}}), message)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            {"type": "Linear", "args": {"in_features": 64, "out_features": 0}},
            "layer 'x' (Linear): argument 'out_features' must be an integer from 1",
        ),
        ({"type": "Linear", "args": {"in_features": 0, "out_features": 3}}, "argument 'in_features' must be"),
        (
            {"type": "LeakyReLU", "args": {"negative_slope": math.nan}},
            "layer 'x' (LeakyReLU): argument 'negative_slope' must be a finite number; got NaN",
        ),
        ({"type": "LeakyReLU", "args": {"negative_slope": math.inf}}, "got Infinity"),
        ({"type": "ELU", "args": {"alpha": -math.inf}}, "argument 'alpha' must be a finite number; got -Infinity"),
        ({"type": "Dropout", "args": {"p": 1.5}}, "argument 'p' must be a number from 0 to 1; got 1.5"),
        ({"type": "Dropout", "args": {"p": math.nan}}, "argument 'p' must be a number from 0 to 1; got NaN"),
        ({"type": "BatchNorm1d", "args": {"num_features": 64, "eps": 0}}, "argument 'eps' must be a finite number > 0"),
        (
            {"type": "BatchNorm1d", "args": {"num_features": 64, "momentum": 2}},
            "argument 'momentum' must be a number from 0 to 1",
        ),
        ({"type": "BatchNorm1d", "args": {"num_features": 0}}, "argument 'num_features' must be"),
        ({"type": "GELU", "args": {"approximate": "fast"}}, "argument 'approximate' must be 'none' or 'tanh'"),
        ({"type": "Softmax", "args": {"dim": 1.0}}, "argument 'dim' must be an integer or null"),
        ({"type": "ReLU", "args": {"inplace": 1}}, "argument 'inplace' must be true or false"),
    ],
)
def test_other_layer_arguments(layer: dict[str, Any], message: str) -> None:
    flat = {"name": "flat", "type": "Flatten"}
    fc = {"name": "fc", "type": "Linear", "args": {"in_features": 64, "out_features": 10}}
    if layer["type"] == "Linear":
        layers = [
            flat,
            {"name": "x", **layer},
            {"name": "fc", "type": "Linear", "args": {"in_features": 3, "out_features": 10}},
        ]
    else:
        layers = [flat, {"name": "x", **layer}, fc]
    _refused(layers, message)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (
            {"type": "MaxPool2d", "args": {"kernel_size": 2, "stride": 0}},
            "(or a pair of them), or null (= kernel_size); got 0",
        ),
        ({"type": "MaxPool2d", "args": {"kernel_size": 0}}, "argument 'kernel_size' must be"),
        (
            {"type": "MaxPool2d", "args": {"kernel_size": 2, "return_indices": True}},
            "argument 'return_indices' must be false",
        ),
        (
            {"type": "AvgPool2d", "args": {"kernel_size": 2, "divisor_override": 0}},
            "argument 'divisor_override' must be",
        ),
        ({"type": "AvgPool2d", "args": {"kernel_size": [2, 2, 2]}}, "(or a pair of them); got [2, 2, 2]"),
        ({"type": "AdaptiveAvgPool2d", "args": {"output_size": 0}}, "argument 'output_size' must be"),
        ({"type": "AdaptiveAvgPool2d", "args": {"output_size": [4, 0]}}, "null keeping the input's size"),
    ],
)
def test_pooling_arguments(layer: dict[str, Any], message: str) -> None:
    _refused(_net({"name": "conv1", "type": "Conv2d", "args": {**CONV, "padding": 1}}, {"name": "x", **layer}), message)


def test_conv1d_takes_one_value_per_dimension() -> None:
    assert arg_problem("Conv1d", {"stride": [2]}) is None
    assert "(or a list of one); got [2, 2]" in (arg_problem("Conv1d", {"stride": [2, 2]}) or "")


def test_valid_arguments_pass() -> None:
    ok: list[tuple[str, dict[str, Any]]] = [
        ("Conv2d", {**CONV, "stride": [1, 2], "padding": "same", "dilation": 1, "groups": 1, "bias": False}),
        ("Conv2d", {**CONV, "padding": [0, 1]}),
        ("MaxPool2d", {"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": True}),
        ("AvgPool2d", {"kernel_size": [2, 2], "divisor_override": None, "count_include_pad": False}),
        ("AdaptiveAvgPool2d", {"output_size": [None, 4]}),
        ("LeakyReLU", {"negative_slope": -0.5, "inplace": False}),
        ("Dropout", {"p": 0}),
        ("Dropout", {"p": 1.0}),
        ("BatchNorm2d", {"num_features": 3, "eps": 1e-5, "momentum": None, "affine": True}),
        ("Softmax", {"dim": -1}),
        ("Flatten", {"start_dim": 1, "end_dim": -1}),
        ("tv.mobilenet_v2", {"num_classes": 10, "width_mult": 0.5}),
    ]
    for layer_type, args in ok:
        assert arg_problem(layer_type, args) is None, (layer_type, args)


def test_unknown_argument_with_a_non_finite_value() -> None:
    assert arg_problem("tv.resnet18", {"zero_init_residual": math.nan}) == (
        "argument 'zero_init_residual' must be finite; got NaN"
    )


def test_builtin_architectures_still_build() -> None:
    for arch in list_architectures():
        build_model(arch.spec())


def test_layer_name_must_end_at_the_end() -> None:
    layers = _net({"name": "conv1\n", "type": "Conv2d", "args": {**CONV, "padding": 1}})
    _refused(layers, "name must be a Python identifier")


def test_refit_names_the_layer_that_cannot_take_the_input() -> None:
    spec = ModelSpec.model_validate(
        {
            "input_shape": (1, 8, 8),
            "num_classes": 10,
            "layers": [
                {"name": "pool", "type": "MaxPool2d", "args": {"kernel_size": 16}},
                {"name": "flat", "type": "Flatten"},
                {"name": "fc", "type": "Linear", "args": {"in_features": 1, "out_features": 10}},
            ],
        }
    )
    with pytest.raises(SpecError, match=r"layer 'pool' \(MaxPool2d\) cannot take input of shape \(1, 8, 8\)"):
        refit_inputs(spec.layers, spec.input_shape)
