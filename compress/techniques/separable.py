"""Spatially separable convolutions: a k×k conv becomes a k×1 conv followed by a 1×k conv.

``Conv2d(C_in, C_out, k, padding=p, stride=s)`` is replaced, under the same name, by
``Sequential(v=Conv2d(C_in, C_mid, (k, 1), padding=(p, 0), stride=(s, 1), bias=False),
h=Conv2d(C_mid, C_out, (1, k), padding=(0, p), stride=(1, s)))``. The output shape is unchanged: the
vertical conv only pads and strides rows, the horizontal one only columns, and because the first
conv has no bias the zero columns it sees in padding stay zero, exactly as in the k×k conv. The
spec is rewritten the same way (a nested ``Sequential``), so the variant round-trips through
``compress.persistence``.

Initialisation (``init="svd"``, the scheme of Jaderberg et al. 2014 / Tai et al. 2016): the trained
weight ``W[o, c, i, j]`` is read as the ``(C_in·k) × (C_out·k)`` matrix ``M[(c, i), (o, j)]``; its rank-
``C_mid`` truncated SVD ``M ≈ (U√S)(√S Vᵀ)`` gives the vertical filters ``V[r, c, i] = (U√S)[(c, i), r]``
and the horizontal ones ``H[o, r, j] = (√S Vᵀ)[r, (o, j)]``, so that ``Σ_r H[o, r, j] V[r, c, i]`` is the
best rank-``C_mid`` approximation of ``W`` in this layout. ``M`` has rank at most
``min(C_in·k, C_out·k)``; beyond that, the extra vertical filters keep their random init and the
matching horizontal weights start at zero (same output, still trainable). The bias moves to the
horizontal conv. Then the model is fine-tuned with the shared loop.

Parameters (dense): ``C_mid·C_in·k + C_out·C_mid·k (+ C_out bias)`` instead of ``C_out·C_in·k² (+ C_out)``;
MACs per output position ``k·C_in·C_mid`` (over the vertical conv's positions) plus ``k·C_mid·C_out``.
"""

from __future__ import annotations

import copy
from typing import Any, Literal, cast

import torch
from pydantic import Field
from torch import nn

from compress.layer_spec import LayerSpec, ModelSpec, build_layers, find_layer
from compress.techniques.base import (
    Context,
    FineTune,
    LayerSelection,
    SearchAxis,
    Technique,
    TechniqueParams,
    Variant,
    register_technique,
    select_layers,
    structure,
    weighted_layers,
)
from compress.training import TrainConfig, seed_everything, train

ELIGIBLE_WHAT = "separable convs (Conv2d named in the spec, square k×k kernel with k > 1, groups 1, dilation 1)"


class SeparableParams(TechniqueParams, LayerSelection, FineTune):
    """Which convs to separate, the width between the two halves, and how to initialise them."""

    rank: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="C_mid: channels between the k×1 and 1×k convs; default each layer's C_in.",
    )
    init: Literal["svd", "random"] = Field(
        default="svd",
        description="Initialise the pair from the spatial SVD of the trained filter, or randomly.",
    )


def is_separable(module: nn.Module) -> bool:
    """A Conv2d whose square k×k (k > 1) kernel can be split: groups 1, dilation 1, zero padding."""
    if not isinstance(module, nn.Conv2d):
        return False
    kh, kw = module.kernel_size
    return kh == kw > 1 and module.groups == 1 and tuple(module.dilation) == (1, 1) and module.padding_mode == "zeros"


def _in_spec(spec: ModelSpec, name: str) -> bool:
    if spec.network is not None:
        return True  # a whole network: every module path is addressable, the swap is a transform
    try:
        return find_layer(spec.layers, name).type == "Conv2d"
    except KeyError:
        return False


def eligible_layers(model: nn.Module, spec: ModelSpec, params: Any = None) -> list[str]:
    """Separable convs that the spec names (so it can be rewritten), heaviest first."""
    modules = dict(model.named_modules())
    return [n for n in weighted_layers(model, (nn.Conv2d,)) if is_separable(modules[n]) and _in_spec(spec, n)]


def check_layers(spec: ModelSpec, params: SeparableParams) -> None:
    """Named layers must be separable convs (UnknownLayerError listing those that are)."""
    if params.layers:
        model = structure(spec)
        select_layers(model, params, eligible_layers(model, spec, params), ELIGIBLE_WHAT)


def separable_spec(layer: LayerSpec, conv: nn.Conv2d, rank: int) -> LayerSpec:
    """The nested ``Sequential`` spec (children ``v`` and ``h``) that replaces ``layer``."""
    k = conv.kernel_size[0]
    sh, sw = conv.stride
    pad: Any = conv.padding
    v_pad: Any = pad if isinstance(pad, str) else [pad[0], 0]
    h_pad: Any = pad if isinstance(pad, str) else [0, pad[1]]
    v = LayerSpec(
        name="v",
        type="Conv2d",
        args={
            "in_channels": conv.in_channels,
            "out_channels": rank,
            "kernel_size": [k, 1],
            "stride": [sh, 1],
            "padding": v_pad,
            "bias": False,
        },
    )
    h = LayerSpec(
        name="h",
        type="Conv2d",
        args={
            "in_channels": rank,
            "out_channels": conv.out_channels,
            "kernel_size": [1, k],
            "stride": [1, sw],
            "padding": h_pad,
            "bias": conv.bias is not None,
        },
    )
    return LayerSpec(name=layer.name, type="Sequential", layers=[v, h])


def spatial_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Split ``weight`` (C_out, C_in, k, k) into vertical (r, C_in, k, 1) and horizontal (C_out, r, 1, k)
    filters, ``r = min(rank, C_in·k, C_out·k)``; also returns the relative Frobenius error of the split.
    """
    c_out, c_in, k, _ = weight.shape
    m = weight.detach().double().permute(1, 2, 0, 3).reshape(c_in * k, c_out * k)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = min(rank, s.numel())
    root = s[:r].sqrt()
    vertical = (u[:, :r] * root).T.reshape(r, c_in, k, 1)
    horizontal = (root[:, None] * vh[:r]).reshape(r, c_out, k).permute(1, 0, 2).reshape(c_out, r, 1, k)
    total = float(s.square().sum())
    error = (float(s[r:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return vertical.to(weight.dtype), horizontal.to(weight.dtype), error


def separate(
    conv: nn.Conv2d, layer: LayerSpec, rank: int, init: Literal["svd", "random"]
) -> tuple[nn.Sequential, LayerSpec, dict[str, Any]]:
    """Build the (k×1, 1×k) pair replacing ``conv`` from its spec; the random part uses torch's global RNG."""
    new_spec = separable_spec(layer, conv, rank)
    pair = build_layers([new_spec])[0]
    assert isinstance(pair, nn.Sequential)
    info: dict[str, Any] = {"rank": rank, "max_rank": min(conv.in_channels, conv.out_channels) * conv.kernel_size[0]}
    if init == "svd":
        vertical, horizontal, error = spatial_svd(conv.weight, rank)
        r = vertical.shape[0]
        v, h = cast(nn.Conv2d, pair.get_submodule("v")), cast(nn.Conv2d, pair.get_submodule("h"))
        with torch.no_grad():
            v.weight[:r].copy_(vertical)
            h.weight.zero_()
            h.weight[:, :r].copy_(horizontal)
            if conv.bias is not None and h.bias is not None:
                h.bias.copy_(conv.bias)
        info["svd_relative_error"] = float(f"{error:.4g}")
    return pair, new_spec, info


def _replace_spec(layers: list[LayerSpec], name: str, new: LayerSpec) -> list[LayerSpec]:
    head, _, rest = name.partition(".")
    out = []
    for layer in layers:
        if layer.name == head:
            layer = layer.model_copy(update={"layers": _replace_spec(layer.layers or [], rest, new)}) if rest else new
        out.append(layer)
    return out


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def separate_layers(
    model: nn.Module, spec: ModelSpec, layers: list[str], rank: int | None, init: Literal["svd", "random"]
) -> tuple[nn.Module, ModelSpec, dict[str, dict[str, Any]]]:
    """Copies of ``model`` and ``spec`` with each of ``layers`` separated (no fine-tuning)."""
    new = copy.deepcopy(model)
    spec_layers = [layer.model_copy(deep=True) for layer in spec.layers]
    infos: dict[str, dict[str, Any]] = {}
    ranks: dict[str, int] = {}
    for name in layers:
        conv = new.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        ranks[name] = rank or conv.in_channels
        layer = LayerSpec(name="conv", type="Conv2d")
        if spec.network is None:
            layer = find_layer(spec_layers, name)
        pair, layer_spec, infos[name] = separate(conv, layer, ranks[name], init)
        _replace_module(new, name, pair)
        if spec.network is None:
            spec_layers = _replace_spec(spec_layers, name, layer_spec)
    if spec.network is not None:
        step = {"kind": "separable", "ranks": ranks}
        return new, spec.model_copy(update={"transforms": [*spec.transforms, step]}), infos
    return new, spec.model_copy(update={"layers": spec_layers}), infos


def rebuild(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    """Replace each conv a whole-network step names by its (k×1, 1×k) pair (weights loaded afterwards)."""
    for name, rank in step["ranks"].items():
        conv = model.get_submodule(name)
        assert isinstance(conv, nn.Conv2d)
        layer = separable_spec(LayerSpec(name="conv", type="Conv2d"), conv, int(rank))
        _replace_module(model, name, build_layers([layer])[0])
    return model


def apply(model: nn.Module, spec: ModelSpec, params: SeparableParams, ctx: Context) -> Variant:
    layers = select_layers(model, params, eligible_layers(model, spec, params), ELIGIBLE_WHAT)
    if not layers:
        raise ValueError(f"separable: the model has no eligible layers; eligible are {ELIGIBLE_WHAT}")
    ctx.report(0.0, f"separating {', '.join(layers)}")
    seed_everything(params.seed)
    new, new_spec, infos = separate_layers(model, spec, layers, params.rank, params.init)
    sub = ctx.sub(0.05, 0.95, "fine-tune: ")
    cfg = TrainConfig(epochs=params.epochs, lr=params.lr, batch_size=params.batch_size, seed=params.seed)
    train(new, ctx.data, cfg, sub.progress, ctx.should_cancel)
    new.eval()
    notes: dict[str, Any] = {"separable_layers": layers, "init": params.init}
    for key in ("rank", "max_rank", "svd_relative_error"):
        values = {name: info[key] for name, info in infos.items() if key in info}
        if values:
            notes[key] = values
    ctx.report(1.0, "separated")
    return Variant(new, new_spec, None, notes, label_suffix=", ".join(layers))


TECHNIQUE = register_technique(
    Technique(
        name="separable",
        description="Replace k×k convs by a k×1 conv then a 1×k conv (C_mid channels between), initialised "
        "from a spatial SVD of the trained filter, then fine-tune.",
        params_model=SeparableParams,
        apply=apply,
        search_axis=SearchAxis(kind="layers", eligible=eligible_layers),
        check_params_against=check_layers,
        keeps_layer_names=False,  # conv1 becomes conv1.v + conv1.h
        rebuild=rebuild,
    )
)
