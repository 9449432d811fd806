"""prune-channels: L2 structured pruning of whole output channels ("processors"), masked or removed.

Each eligible layer loses the ``round(amount * outputs)`` output channels (conv) or units (linear)
with the smallest L2 norm (``prune.ln_structured(n=2, dim=0)``), keeping at least one. The final
classifier's outputs (the classes) and single-output layers are never pruned.

- ``mask`` (the course's): the channels stay, zeroed. Besides the weight rows, their bias and the
  affine weight/bias of a BatchNorm fed by them are masked too, so a pruned channel really outputs
  zero (with only the weight rows zeroed it would still output its bias, or BatchNorm's shift).
- ``remove``: the channels are deleted, with the matching inputs of the next conv/linear layer
  (after a Flatten: channels x spatial positions input features) and of any BatchNorm between
  (weight, bias, running statistics). The spec's out_channels/out_features are rewritten and the
  inputs refitted, so the result is a smaller dense network that stores and runs smaller. Before
  any fine-tuning it computes the same function as the ``mask`` model.

A layer is eligible when its output reaches the next conv/linear layer only through layers that
map a zero channel to zero (ReLU-like activations, Tanh, pooling, dropout, affine BatchNorm, Flatten).
Sequential layer specs (nested Sequentials included) are planned here; any other network (a whole
torchvision network) goes through Torch-Pruning's dependency graph (``prune_graph``).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils import parametrize, prune

from compress.layer_spec import LayerSpec, ModelSpec, build_model, find_layer, refit_inputs
from compress.size import dense_size
from compress.techniques import prune_graph
from compress.techniques.base import (
    Context,
    FineTune,
    SearchAxis,
    Technique,
    TechniqueParams,
    UnknownLayerError,
    Variant,
    register_technique,
    structure,
)
from compress.techniques.prune_l1 import tensor_attr
from compress.training import TrainConfig, train

Amount = Annotated[float, Field(ge=0.0, lt=1.0)]

WEIGHTED = ("Conv1d", "Conv2d", "Linear")
NORMS = ("BatchNorm1d", "BatchNorm2d")
# Channel-wise layers that map an all-zero channel to an all-zero channel.
ZERO_PRESERVING = (
    "ReLU",
    "ReLU6",
    "LeakyReLU",
    "ELU",
    "GELU",
    "SiLU",
    "Hardswish",
    "Tanh",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool2d",
    "Dropout",
    "Dropout2d",
    "Identity",
)


class PruneChannelsParams(TechniqueParams, FineTune):
    """Structured L2 pruning of whole output channels, zeroed (mask) or physically removed (remove)."""

    amount: Amount | dict[str, Amount] = Field(
        default=0.5,
        description="Fraction of output channels to prune: one number for every eligible layer, or {layer: fraction}.",
    )
    mode: Literal["mask", "remove"] = Field(
        default="mask", description="'mask': zero the channels, same shapes; 'remove': delete them (smaller network)."
    )

    @model_validator(mode="after")
    def _search_needs_one_amount(self) -> PruneChannelsParams:
        if self.search and isinstance(self.amount, dict):
            raise ValueError("search varies one amount for every eligible layer; give amount as a number, not a dict")
        return self


@dataclass
class ChannelLink:
    """How a layer's output channels reach the next weighted layer."""

    layer: str
    outputs: int
    consumer: str
    norms: list[tuple[str, int]] = field(default_factory=list)  # (BatchNorm, features per channel there)


@dataclass
class ChannelPlan:
    links: dict[str, ChannelLink]
    skipped: dict[str, str]  # weighted layer -> why it cannot be pruned
    flat: list[tuple[str, LayerSpec]]
    in_shapes: dict[str, tuple[int, ...]]


def flat_layers(layers: list[LayerSpec], prefix: str = "") -> list[tuple[str, LayerSpec]]:
    """Leaf layers in execution order with dotted names (nested Sequentials run in order)."""
    out: list[tuple[str, LayerSpec]] = []
    for layer in layers:
        name = f"{prefix}{layer.name}"
        if layer.type == "Sequential":
            out.extend(flat_layers(layer.layers or [], f"{name}."))
        else:
            out.append((name, layer))
    return out


def _out_arg(layer: LayerSpec) -> str:
    return "out_features" if layer.type == "Linear" else "out_channels"


def plan_channels(model: nn.Module, spec: ModelSpec) -> ChannelPlan:
    """Which layers can lose output channels, and which layers follow each of them."""
    if spec.transforms:
        raise ValueError(
            "prune-channels works on plain float layer specs; this model was rebuilt by "
            f"{[t.get('kind', '?') for t in spec.transforms]}: prune channels before that step"
        )
    flat = flat_layers(spec.layers)
    whole = [f"{n} ({ls.type})" for n, ls in flat if ls.type.startswith("tv.")]
    if whole or not isinstance(model, nn.Sequential):
        raise ValueError(
            f"prune-channels needs a Sequential layer spec to know which layer feeds which; "
            f"{', '.join(whole) or 'this model'} is a whole network (residual connections), which it cannot rewire"
        )
    in_shapes: dict[str, tuple[int, ...]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(1, *spec.input_shape)
            for name, _ in flat:
                in_shapes[name] = tuple(x.shape)
                x = model.get_submodule(name)(x)
    finally:
        model.train(was_training)

    weighted = [i for i, (_, ls) in enumerate(flat) if ls.type in WEIGHTED]
    links: dict[str, ChannelLink] = {}
    skipped: dict[str, str] = {}
    for pos, i in enumerate(weighted):
        name, layer = flat[i]
        outputs = int(layer.args.get(_out_arg(layer), 0))
        if pos == len(weighted) - 1:
            skipped[name] = "it is the final classifier (its outputs are the classes)"
            continue
        if layer.args.get("groups", 1) != 1:
            skipped[name] = "grouped convolutions keep their channel groups"
            continue
        if outputs <= 1:
            skipped[name] = "it has a single output"
            continue
        if layer.type == "Linear" and len(in_shapes[name]) != 2:
            skipped[name] = "a Linear layer on a multi-dimensional input does not produce channels"
            continue
        if parametrize.is_parametrized(model.get_submodule(name)):
            skipped[name] = "it is parametrized (e.g. orthogonal); prune channels before parametrizing"
            continue
        link = ChannelLink(name, outputs, consumer="")
        per_channel = 1
        for nxt, nls in flat[i + 1 :]:
            shape = in_shapes[nxt]
            if nls.type in ZERO_PRESERVING:
                continue
            if nls.type in NORMS and nls.args.get("affine", True):
                link.norms.append((nxt, per_channel))
                continue
            if nls.type == "Flatten" and nls.args.get("start_dim", 1) == 1 and nls.args.get("end_dim", -1) == -1:
                per_channel *= math.prod(shape[2:])
                continue
            conv_consumer = nls.type in ("Conv1d", "Conv2d") and nls.args.get("groups", 1) == 1 and per_channel == 1
            if conv_consumer or (nls.type == "Linear" and len(shape) == 2):
                link.consumer = nxt
            else:
                skipped[name] = f"'{nxt}' ({nls.type}) after it would not take the removed channels away cleanly"
            break
        if link.consumer:
            links[name] = link
        elif name not in skipped:
            skipped[name] = "no conv/linear layer consumes its output"
    return ChannelPlan(links, skipped, flat, in_shapes)


def _counts(plan: ChannelPlan, amount: float | dict[str, float]) -> dict[str, int]:
    """Channels to prune per layer: round(amount * outputs), at most outputs - 1."""
    if isinstance(amount, dict):
        valid = list(plan.links)
        bad = [n for n in amount if n not in plan.links]
        if bad:
            why = "; ".join(f"{n}: {plan.skipped[n]}" for n in bad if n in plan.skipped)
            raise UnknownLayerError(
                f"unknown or ineligible layer(s) {bad}; layers whose channels can be pruned: "
                f"{', '.join(valid) or 'none'}" + (f" ({why})" if why else ""),
                bad,
                valid,
                field="amount",
            )
        wanted = amount
    else:
        wanted = dict.fromkeys(plan.links, amount)
    return {n: min(round(a * plan.links[n].outputs), plan.links[n].outputs - 1) for n, a in wanted.items()}


def check_layers(spec: ModelSpec, params: PruneChannelsParams) -> None:
    """The layers an ``amount`` dict names must have prunable channels (planned on the meta device)."""
    if isinstance(params.amount, dict) and prune_graph.needs_graph(spec):
        _check_graph_layers(spec, params.amount)
    elif isinstance(params.amount, dict):
        with torch.device("meta"):
            plan = plan_channels(structure(spec), spec)
        _counts(plan, params.amount)


def _mask_channels(model: nn.Module, plan: ChannelPlan, counts: dict[str, int]) -> dict[str, torch.Tensor]:
    """Register the structured masks; returns each pruned layer's kept-channel boolean vector."""
    kept: dict[str, torch.Tensor] = {}
    for name, k in counts.items():
        if k == 0:
            continue
        module = model.get_submodule(name)
        prune.ln_structured(module, "weight", amount=k, n=2, dim=0)
        channel = tensor_attr(module, "weight_mask").detach().flatten(1).amax(1)
        if module.bias is not None:
            prune.custom_from_mask(module, "bias", channel)
        for norm, per_channel in plan.links[name].norms:
            bn = model.get_submodule(norm)
            feature = channel.repeat_interleave(per_channel)
            prune.custom_from_mask(bn, "weight", feature)
            prune.custom_from_mask(bn, "bias", feature)
        kept[name] = channel.bool()
    return kept


def _make_permanent(model: nn.Module) -> None:
    for module in model.modules():
        for pname in ("weight", "bias"):
            if hasattr(module, f"{pname}_mask"):
                prune.remove(module, pname)


def remove_channels(
    model: nn.Module, spec: ModelSpec, plan: ChannelPlan, kept: dict[str, torch.Tensor]
) -> tuple[nn.Module, ModelSpec]:
    """Build the smaller network without the pruned channels and copy the surviving weights."""
    layers = [layer.model_copy(deep=True) for layer in spec.layers]
    for name, channels in kept.items():
        layer = find_layer(layers, name)
        layer.args[_out_arg(layer)] = int(channels.sum())
    new_spec = spec.model_copy(update={"layers": refit_inputs(layers, spec.input_shape)})
    small = build_model(new_spec)
    selected: torch.Tensor | None = None  # kept indices along dim 1 of the running activation
    with torch.no_grad():
        for name, layer in plan.flat:
            state = {k: v.detach().clone() for k, v in model.get_submodule(name).state_dict().items()}
            if layer.type in WEIGHTED:
                if selected is not None:
                    state["weight"] = state["weight"][:, selected]
                out = kept.get(name)
                if out is not None:
                    state["weight"] = state["weight"][out]
                    if "bias" in state:
                        state["bias"] = state["bias"][out]
                selected = out
            elif layer.type in NORMS and selected is not None:
                for key in ("weight", "bias", "running_mean", "running_var"):
                    if key in state:
                        state[key] = state[key][selected]
            elif layer.type == "Flatten" and selected is not None:
                selected = selected.repeat_interleave(math.prod(plan.in_shapes[name][2:]))
            small.get_submodule(name).load_state_dict(state)
    small.eval()
    return small, new_spec


def _check_graph_layers(spec: ModelSpec, amount: dict[str, float]) -> None:
    if spec.transforms:
        raise ValueError("prune-channels works on float networks; prune channels before any transform")
    with torch.device("meta"):
        valid = prune_graph.prunable(structure(spec))
    bad = [n for n in amount if n not in valid]
    if bad:
        raise UnknownLayerError(
            f"unknown or ineligible layer(s) {bad}; layers whose channels can be pruned: {', '.join(valid)}",
            bad,
            valid,
            field="amount",
        )


def _apply_graph(model: nn.Module, spec: ModelSpec, params: PruneChannelsParams, ctx: Context) -> Variant:
    """Any traced network: channel groups from Torch-Pruning's DependencyGraph."""
    if isinstance(params.amount, dict):
        _check_graph_layers(spec, params.amount)
    elif spec.transforms:
        raise ValueError("prune-channels works on float networks; prune channels before any transform")
    work = copy.deepcopy(model)
    ctx.report(0.0, "pruning channel groups (dependency graph)")
    cfg = TrainConfig(epochs=params.epochs, lr=params.lr, batch_size=params.batch_size, seed=params.seed)
    sub = ctx.sub(0.05, 1.0, "fine-tuning: ")
    notes: dict[str, Any] = {"mode": params.mode, "finetune_epochs": params.epochs, "planner": "torch-pruning"}
    if params.mode == "mask":
        notes["channels"] = prune_graph.mask_channels(work, spec, params.amount)
        train(work, ctx.data, cfg, sub.progress, sub.should_cancel)
        _make_permanent(work)
        work.eval()
        size = dense_size(work)
        size.convention = "dense: masked channels stored as zeros (mode 'remove' drops them)"
        return Variant(work, spec, size, notes)
    notes["channels"], step = prune_graph.remove_channels(work, spec, params.amount)
    train(work, ctx.data, cfg, sub.progress, sub.should_cancel)
    work.eval()
    before = sum(p.numel() for p in model.parameters())
    notes["params_before_after"] = f"{before} → {sum(p.numel() for p in work.parameters())}"
    return Variant(work, spec.model_copy(update={"transforms": [*spec.transforms, step]}), None, notes)


def apply(model: nn.Module, spec: ModelSpec, params: PruneChannelsParams, ctx: Context) -> Variant:
    if prune_graph.needs_graph(spec):
        return _apply_graph(model, spec, params, ctx)
    work = copy.deepcopy(model)
    plan = plan_channels(work, spec)
    if not plan.links:
        reasons = "; ".join(f"{n}: {why}" for n, why in plan.skipped.items())
        raise ValueError(f"prune-channels: no layer of this model can lose output channels ({reasons})")
    counts = _counts(plan, params.amount)
    ctx.report(0.0, f"pruning channels of {sum(1 for k in counts.values() if k)} layer(s)")
    kept = _mask_channels(work, plan, counts)
    channels = {n: f"{plan.links[n].outputs} → {plan.links[n].outputs - k}" for n, k in counts.items()}
    notes: dict[str, Any] = {"mode": params.mode, "channels": channels, "finetune_epochs": params.epochs}
    capped = [n for n in counts if counts[n] < round(_amount_of(params.amount, n) * plan.links[n].outputs)]
    if capped:
        notes["kept_one_channel"] = capped
    cfg = TrainConfig(epochs=params.epochs, lr=params.lr, batch_size=params.batch_size, seed=params.seed)
    sub = ctx.sub(0.05, 1.0, "fine-tuning: ")

    if params.mode == "mask":
        train(work, ctx.data, cfg, sub.progress, sub.should_cancel)  # the masks stay in force
        _make_permanent(work)
        work.eval()
        size = dense_size(work)
        size.convention = "dense: masked channels stored as zeros (mode 'remove' drops them)"
        return Variant(work, spec, size, notes)

    _make_permanent(work)
    small, new_spec = remove_channels(work, spec, plan, kept)
    train(small, ctx.data, cfg, sub.progress, sub.should_cancel)
    small.eval()
    before = sum(p.numel() for p in model.parameters())
    notes["params_before_after"] = f"{before} → {sum(p.numel() for p in small.parameters())}"
    return Variant(small, new_spec, None, notes)


def _amount_of(amount: float | dict[str, float], name: str) -> float:
    return amount[name] if isinstance(amount, dict) else amount


register_technique(
    Technique(
        name="prune-channels",
        description="L2 structured pruning of whole output channels (ln_structured, dim 0): zeroed in place "
        "(mask) or physically removed with the next layer's matching inputs (remove); optional fine-tune.",
        params_model=PruneChannelsParams,
        apply=apply,
        search_axis=SearchAxis(kind="ratio", field="amount", low=0.0, high=0.95, coarse=(0.25, 0.5, 0.7, 0.8, 0.9)),
        check_params_against=check_layers,
        rebuild=prune_graph.rebuild,
    )
)
