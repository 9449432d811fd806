"""prune-l1: L1 unstructured magnitude pruning (``torch.nn.utils.prune``), then keep, fine-tune or restart.

The smallest-magnitude weights of the selected Conv2d/Linear layers are zeroed, per layer
(``l1_unstructured``, the same fraction of every layer) or globally (``global_unstructured``, one
threshold over all selected layers, so layers end up with different sparsities). Then:

- ``keep``: no training;
- ``finetune``: the survivors keep their trained values and train, the masks fixed;
- ``reinit``: only the sparsity pattern is kept: the whole network restarts from a seeded random
  initialisation (every layer's ``reset_parameters``), the masks are applied and it trains, the
  masks fixed. One variant per seed in ``seeds`` (the runner notes their accuracy mean ± std).

The masks are made permanent (``prune.remove``) before returning, so the result is a plain model
whose pruned weights are exact zeros. Its size counts the survivors plus the index cost of the
stated sparse format; ``sparse_macs`` (ops_count) counts only the surviving weights.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn
from torch.nn.utils import prune

from compress.layer_spec import ModelSpec
from compress.ops_count import is_conv, is_linear
from compress.size import SizeReport, sparse_size
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
from compress.training import TrainConfig, train

LAYER_TYPES: dict[str, type[nn.Module]] = {"Conv2d": nn.Conv2d, "Linear": nn.Linear}
COO_INDEX_BYTES = 4


class PruneL1Params(TechniqueParams, LayerSelection, FineTune):
    """L1 unstructured pruning of Conv2d/Linear weights, then keep / fine-tune / re-initialise."""

    amount: float = Field(default=0.5, ge=0.0, lt=1.0, description="Fraction of the weights to zero (0 to <1).")
    scope: Literal["layer", "global"] = Field(
        default="layer",
        description="'layer': the same fraction in every selected layer; 'global': one threshold over all of them.",
    )
    layer_types: list[Literal["Conv2d", "Linear"]] = Field(
        default=["Conv2d", "Linear"], min_length=1, description="Layer types eligible for pruning."
    )
    top_k: int | None = Field(  # type: ignore[assignment]  # LayerSelection's field, default widened to all
        default=None, ge=1, le=1000, description="The k heaviest eligible layers; default: all eligible layers."
    )
    retrain: Literal["keep", "finetune", "reinit"] = Field(
        default="finetune",
        description="After pruning: keep as is, fine-tune the survivors, or re-initialise them randomly and train.",
    )
    seeds: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="reinit only: one variant per starting point (init seed); default [seed].",
    )
    sparse_format: Literal["coo", "bitmap"] = Field(
        default="coo",
        description="Sparse storage counted: 'coo' = value + 4-byte index each, 'bitmap' = value + 1 bit/weight.",
    )

    @model_validator(mode="after")
    def _check_seeds(self) -> PruneL1Params:
        if self.seeds is not None:
            if self.retrain != "reinit" and len(self.seeds) > 1:
                raise ValueError(
                    f"seeds {self.seeds}: several starting points only make sense with retrain='reinit' "
                    f"(retrain is '{self.retrain}'; its result does not depend on an init seed)"
                )
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be distinct, got {self.seeds}")
        return self


def eligible_layers(model: nn.Module, params: PruneL1Params) -> list[str]:
    """Layers of ``params.layer_types``, heaviest first."""
    types = tuple(LAYER_TYPES[t] for t in dict.fromkeys(params.layer_types))
    return weighted_layers(model, types)


def check_layers(spec: ModelSpec, params: PruneL1Params) -> None:
    """Named layers must exist and be of ``layer_types`` (UnknownLayerError listing those that are)."""
    if params.layers:
        model = structure(spec)
        select_layers(model, params, eligible_layers(model, params), _eligible_what(params))


def _eligible_what(params: PruneL1Params) -> str:
    return f"eligible layers ({', '.join(params.layer_types)})"


def bitmap_size(model: nn.Module) -> SizeReport:
    """Pruned conv/linear weights as survivors at their dtype + a 1-bit presence mask per position
    (rounded up to whole bytes per tensor); a weight is stored densely when that is smaller, and
    other parameters (biases, norms) stay dense."""
    n = nbytes = nonzero = 0
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            nz = int(torch.count_nonzero(p.detach()))
            nonzero += nz
            dense = p.numel() * p.element_size()
            if pname == "weight" and (is_conv(module) or is_linear(module)):
                sparse = nz * p.element_size() + math.ceil(p.numel() / 8)
                if sparse < dense:
                    n += nz
                    nbytes += sparse
                    continue
            n += p.numel()
            nbytes += dense
    convention = "sparse bitmap: pruned weights as survivors at dtype + 1 bit per position; dense where smaller"
    return SizeReport(n, nbytes, nonzero, convention)


def sparse_report(model: nn.Module, fmt: str) -> SizeReport:
    if fmt == "bitmap":
        return bitmap_size(model)
    report = sparse_size(model, index_bytes=COO_INDEX_BYTES)
    report.convention += "; dense where smaller; biases and norms dense"
    return report


def tensor_attr(module: nn.Module, name: str) -> torch.Tensor:
    value = getattr(module, name)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.{name} is not a tensor")
    return value


def _prune(model: nn.Module, names: list[str], params: PruneL1Params) -> dict[str, torch.Tensor]:
    """Register L1 masks on ``names`` of ``model``; returns a copy of each mask."""
    modules = [model.get_submodule(n) for n in names]
    if params.scope == "global":
        prune.global_unstructured(
            [(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=params.amount
        )
    else:
        for m in modules:
            prune.l1_unstructured(m, "weight", amount=params.amount)
    return {n: tensor_attr(m, "weight_mask").detach().clone() for n, m in zip(names, modules, strict=True)}


def _make_permanent(model: nn.Module, names: list[str]) -> None:
    for n in names:
        prune.remove(model.get_submodule(n), "weight")


def _reinit(trained: nn.Module, masks: dict[str, torch.Tensor], seed: int) -> nn.Module:
    """A seeded random restart of ``trained``'s structure with the same masks registered."""
    model = copy.deepcopy(trained)
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    for name, mask in masks.items():
        prune.custom_from_mask(model.get_submodule(name), "weight", mask)
    return model


def _sparsity_notes(model: nn.Module, names: list[str], order: list[str]) -> dict[str, object]:
    per_layer: dict[str, float] = {}
    zeros = total = 0
    for name in order:
        if name not in names:
            continue
        w = tensor_attr(model.get_submodule(name), "weight").detach()
        z = int((w == 0).sum())
        per_layer[name] = round(z / w.numel(), 4)
        zeros += z
        total += w.numel()
    all_w = [m.weight.detach() for n, m in model.named_modules() if n and isinstance(m, nn.Conv2d | nn.Linear)]
    all_zero = sum(int((w == 0).sum()) for w in all_w)
    all_total = sum(w.numel() for w in all_w)
    return {
        "sparsity_per_layer": per_layer,
        "sparsity_overall": round(zeros / total, 4) if total else 0.0,
        "sparsity_all_weights": round(all_zero / all_total, 4) if all_total else 0.0,
    }


def apply(model: nn.Module, spec: ModelSpec, params: PruneL1Params, ctx: Context) -> Variant | list[Variant]:
    eligible = eligible_layers(model, params)
    if not eligible:
        raise ValueError(f"prune-l1: the model has no layers of type {', '.join(params.layer_types)}")
    names = select_layers(model, params, eligible, _eligible_what(params))
    order = [n for n, _ in model.named_modules() if n in names]

    pruned = copy.deepcopy(model)
    ctx.report(0.0, f"L1 pruning {len(names)} layer(s), {params.scope} scope, amount {params.amount}")
    masks = _prune(pruned, names, params)
    common = {
        "scope": params.scope,
        "amount": params.amount,
        "retrain": params.retrain,
        "pruned_layers": order,
        "sparse_format": params.sparse_format,
    }

    def finish(m: nn.Module, notes: dict[str, object], suffix: str = "") -> Variant:
        _make_permanent(m, names)
        m.eval()
        notes = {**common, **notes, **_sparsity_notes(m, names, order)}
        return Variant(m, spec, sparse_report(m, params.sparse_format), notes, suffix)

    def cfg(seed: int) -> TrainConfig:
        return TrainConfig(epochs=params.epochs, lr=params.lr, batch_size=params.batch_size, seed=seed)

    if params.retrain == "keep":
        return finish(pruned, {})
    if params.retrain == "finetune":
        sub = ctx.sub(0.0, 1.0, "fine-tuning: ")
        train(pruned, ctx.data, cfg(params.seed), sub.progress, sub.should_cancel)
        return finish(pruned, {"finetune_epochs": params.epochs})

    seeds = params.seeds or [params.seed]
    _make_permanent(pruned, names)  # the trained weights are no longer needed, only the masks
    variants = []
    for i, seed in enumerate(seeds):
        sub = ctx.sub(i / len(seeds), (i + 1) / len(seeds), f"seed {seed}: ")
        restarted = _reinit(pruned, masks, seed)
        train(restarted, ctx.data, cfg(seed), sub.progress, sub.should_cancel)
        variants.append(finish(restarted, {"init_seed": seed, "train_epochs": params.epochs}, f"seed={seed}"))
    return variants


register_technique(
    Technique(
        name="prune-l1",
        description="L1 unstructured pruning (per layer or global) of Conv2d/Linear weights; keep, fine-tune "
        "the survivors, or re-initialise and retrain them (several seeds). Size counts survivors + sparse index.",
        params_model=PruneL1Params,
        apply=apply,
        search_axis=SearchAxis(kind="ratio", field="amount", low=0.0, high=0.99, coarse=(0.5, 0.7, 0.8, 0.9, 0.95)),
        check_params_against=check_layers,
    )
)
