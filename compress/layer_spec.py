"""Architectures as data: a JSON layer spec turned into `nn.Sequential(OrderedDict(...))`.

A spec is an ordered list of layers, each ``{"name", "type", "args"}`` where ``args`` are the
PyTorch layer's keyword arguments. Only allow-listed layer types are built, so a stored or uploaded
model is rebuilt without executing any user-supplied code (no pickle, no TorchScript).
``Sequential`` nests (``{"type": "Sequential", "layers": [...]}``), which is how structural
techniques (separable convolutions) keep the original layer's name.

A whole torchvision classification network is a spec of its own kind: ``network`` names it and its
keyword arguments (``{"name": "resnet18", "args": {"num_classes": 10}}``), ``layers`` stays empty,
and its layers are addressed by their module paths (``layer1.0.conv1``). It is built with
``weights=None`` (never downloaded); its stem convolution takes the spec's input channels.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compress import pooling
from compress.spec_checks import arg_problem

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # with fullmatch: "$" would let "f\n" through


class SpecError(ValueError):
    """A layer spec that cannot be built; the message names the layer and the reason."""


def _torchvision_quantizable(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs: Any) -> nn.Module:
        from torchvision.models import quantization as tvq

        return getattr(tvq, name)(weights=None, quantize=False, **kwargs)

    return build


LAYER_TYPES: dict[str, Callable[..., nn.Module]] = {
    "Conv2d": nn.Conv2d,
    "Conv1d": nn.Conv1d,
    "Linear": nn.Linear,
    "ReLU": nn.ReLU,
    "ReLU6": nn.ReLU6,
    "LeakyReLU": nn.LeakyReLU,
    "ELU": nn.ELU,
    "GELU": nn.GELU,
    "SiLU": nn.SiLU,
    "Hardswish": nn.Hardswish,
    "Tanh": nn.Tanh,
    "Sigmoid": nn.Sigmoid,
    "Softmax": nn.Softmax,
    "MaxPool2d": pooling.MaxPool2d,  # nn.MaxPool2d, fast on NCHW CPU tensors at inference
    "AvgPool2d": pooling.AvgPool2d,
    "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d,
    "AdaptiveMaxPool2d": nn.AdaptiveMaxPool2d,
    "Flatten": nn.Flatten,
    "Dropout": nn.Dropout,
    "Dropout2d": nn.Dropout2d,
    "BatchNorm1d": nn.BatchNorm1d,
    "BatchNorm2d": nn.BatchNorm2d,
    "Identity": nn.Identity,
    # Whole torchvision networks with stable submodule names that eager-mode quantization can fuse.
    "tv.resnet18": _torchvision_quantizable("resnet18"),
    "tv.mobilenet_v2": _torchvision_quantizable("mobilenet_v2"),
}

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softmax,
)


class LayerSpec(BaseModel):
    """One named layer: a PyTorch layer type from the allow-list and its keyword arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Submodule name, unique among its siblings (e.g. 'conv1').")
    type: str = Field(description="Layer type from the allow-list (GET /architectures lists it).")
    args: dict[str, Any] = Field(default_factory=dict, description="The layer's keyword arguments.")
    layers: list[LayerSpec] | None = Field(default=None, description="Children, for type 'Sequential'.")


TORCHVISION_NETWORKS: tuple[str, ...] = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "vgg11_bn",
)
"""torchvision classification networks a ``network`` spec may name."""


class NetworkSpec(BaseModel):
    """A whole torchvision classification network: its builder's name and keyword arguments."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="torchvision model name (GET /architectures lists the allowed ones).")
    args: dict[str, Any] = Field(default_factory=dict, description="Builder keyword arguments (num_classes, ...).")


class ModelSpec(BaseModel):
    """Everything needed to rebuild a model's structure; weights are stored beside it."""

    model_config = ConfigDict(extra="forbid")

    input_shape: tuple[int, int, int] = Field(description="C, H, W of one sample.")
    num_classes: int = Field(ge=2)
    layers: list[LayerSpec] = Field(default_factory=list, description="Named layers (empty for a network).")
    network: NetworkSpec | None = Field(default=None, description="A whole torchvision network instead of layers.")
    transforms: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Structural rebuild steps applied after building the layers (e.g. int8 conversion).",
    )


def _check_args(layer: LayerSpec, path: str) -> None:
    if layer.type not in LAYER_TYPES and layer.type != "Sequential":
        allowed = ", ".join(sorted([*LAYER_TYPES, "Sequential"]))
        raise SpecError(f"layer '{path}': type '{layer.type}' is not allowed; allowed types: {allowed}")
    if layer.args.get("padding_mode", "zeros") != "zeros":
        raise SpecError(
            f"layer '{path}': padding_mode '{layer.args['padding_mode']}' is not supported; only zero "
            "padding ('zeros') is, because PyTorch quantization cannot convert other padding modes"
        )
    for key, value in layer.args.items():
        if not isinstance(value, int | float | bool | str | list | tuple | type(None)):
            raise SpecError(f"layer '{path}': argument '{key}' must be a JSON number, string, bool or list")
    problem = arg_problem(layer.type, layer.args)
    if problem:
        raise SpecError(f"layer '{path}' ({layer.type}): {problem}")


def _build_layers(layers: list[LayerSpec], prefix: str = "") -> nn.Sequential:
    seen: set[str] = set()
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    if not layers:
        raise SpecError(f"'{prefix or 'model'}': a spec needs at least one layer")
    for layer in layers:
        path = f"{prefix}{layer.name}"
        if not _NAME.fullmatch(layer.name):
            raise SpecError(f"layer '{path}': name must be a Python identifier of at most 64 characters")
        if layer.name in seen:
            raise SpecError(f"layer '{path}': duplicate name")
        seen.add(layer.name)
        _check_args(layer, path)
        if layer.type == "Sequential":
            modules[layer.name] = _build_layers(layer.layers or [], prefix=f"{path}.")
            continue
        if layer.layers:
            raise SpecError(f"layer '{path}': only 'Sequential' takes child layers")
        args = {k: tuple(v) if isinstance(v, list) else v for k, v in layer.args.items()}
        try:
            modules[layer.name] = LAYER_TYPES[layer.type](**args)
        except (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError) as exc:
            raise SpecError(f"layer '{path}' ({layer.type}): bad arguments {layer.args}: {exc}") from exc
    return nn.Sequential(modules)


def build_layers(layers: list[LayerSpec]) -> nn.Sequential:
    """Build the float network described by ``layers`` (no shape check)."""
    return _build_layers(layers)


def build_network(network: NetworkSpec, in_channels: int) -> nn.Module:
    """The torchvision network ``network`` names, untrained, its stem taking ``in_channels``."""
    if network.name not in TORCHVISION_NETWORKS:
        raise SpecError(f"network '{network.name}' is not allowed; allowed networks: {', '.join(TORCHVISION_NETWORKS)}")
    for key, value in network.args.items():
        if key in ("weights", "weights_backbone", "progress") or not isinstance(value, int | float | bool):
            raise SpecError(f"network '{network.name}': argument '{key}' must be a JSON number or bool")
    from torchvision import models

    try:
        model = models.get_model(network.name, weights=None, **network.args)
    except (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError) as exc:
        raise SpecError(f"network '{network.name}': bad arguments {network.args}: {exc}") from exc
    _fit_stem(model, in_channels)
    return model


def _fit_stem(model: nn.Module, in_channels: int) -> None:
    """Replace the first convolution by one taking ``in_channels`` (same other arguments)."""
    name, stem = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    if stem.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        stem.out_channels,
        stem.kernel_size,  # type: ignore[arg-type]
        stem.stride,  # type: ignore[arg-type]
        stem.padding,  # type: ignore[arg-type]
        stem.dilation,  # type: ignore[arg-type]
        stem.groups,
        stem.bias is not None,
    )
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def build_float(spec: ModelSpec) -> nn.Module:
    """``spec``'s float network (its ``network`` or its ``layers``), no shape check, transforms not replayed."""
    if spec.network is not None:
        if spec.layers:
            raise SpecError("a spec gives either a network or layers, not both")
        return build_network(spec.network, spec.input_shape[0])
    return build_layers(spec.layers)


def output_shapes(model: nn.Module, input_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Run one dummy sample through ``model`` and return each top-level layer's output shape.

    Raises SpecError naming the first layer whose input does not fit.
    """
    shapes: list[tuple[str, tuple[int, ...]]] = []
    x = torch.zeros(1, *input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            children = list(model.named_children()) if isinstance(model, nn.Sequential) else [("", model)]
            for name, module in children:
                try:
                    x = module(x)
                except (RuntimeError, ValueError, IndexError, TypeError, ArithmeticError) as exc:
                    raise SpecError(
                        f"layer '{name}' ({type(module).__name__}) cannot take input of shape "
                        f"{tuple(x.shape[1:])}: {str(exc).splitlines()[0]}"
                    ) from exc
                shapes.append((name, tuple(x.shape[1:])))
    finally:
        model.train(was_training)
    return shapes


def build_model(spec: ModelSpec) -> nn.Module:
    """Build, shape-check and return the float network of ``spec.layers``.

    A spec with ``transforms`` (int8 conversion, ...) describes a stored technique result, not float
    layers: ``compress.persistence.rebuild_model`` builds it, so this refuses it.
    """
    if spec.transforms:
        kinds = ", ".join(str(step.get("kind", "?")) for step in spec.transforms)
        raise SpecError(
            f"this spec records transforms ({kinds}) on top of its float layers; "
            "build it with compress.persistence.rebuild_model"
        )
    model = build_float(spec)
    final = output_shapes(model, spec.input_shape)[-1][1]
    if final != (spec.num_classes,):
        last = spec.network.name if spec.network else spec.layers[-1].name
        raise SpecError(
            f"the last layer '{last}' outputs shape {final}, "
            f"but the model must output ({spec.num_classes},) class scores"
        )
    return model


def refit_inputs(layers: list[LayerSpec], input_shape: tuple[int, ...]) -> list[LayerSpec]:
    """Return a copy of ``layers`` whose input sizes (in_channels, in_features, num_features)
    follow from the layers before them, so that changing a layer's output width stays consistent.
    """
    out: list[LayerSpec] = []
    x = torch.zeros(1, *input_shape)
    for layer in layers:
        new = layer.model_copy(deep=True)
        if new.type == "Sequential":
            new.layers = refit_inputs(new.layers or [], tuple(x.shape[1:]))
        elif new.type in ("Conv2d", "Conv1d"):
            groups = new.args.get("groups", 1)
            if groups not in (1,) and new.args.get("in_channels") == groups:
                new.args["groups"] = x.shape[1]
                new.args["out_channels"] = x.shape[1] * (new.args["out_channels"] // groups)
            new.args["in_channels"] = x.shape[1]
        elif new.type == "Linear":
            new.args["in_features"] = x.shape[-1]
        elif new.type in ("BatchNorm1d", "BatchNorm2d"):
            new.args["num_features"] = x.shape[1]
        module = _build_layers([new])
        try:
            with torch.no_grad():
                x = module.eval()(x)
        except (RuntimeError, ValueError, IndexError, TypeError, ArithmeticError) as exc:
            raise SpecError(
                f"layer '{new.name}' ({new.type}) cannot take input of shape {tuple(x.shape[1:])}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from exc
        out.append(new)
    return out


def find_layer(layers: list[LayerSpec], name: str) -> LayerSpec:
    """Find a layer by dotted name (``conv1`` or ``conv1.h``)."""
    head, _, rest = name.partition(".")
    for layer in layers:
        if layer.name == head:
            if not rest:
                return layer
            return find_layer(layer.layers or [], rest)
    raise KeyError(name)
