"""Orthogonal weights: constrain the selected Conv2d/Linear weights to orthogonal matrices, fine-tune.

Each selected weight is seen as a matrix ``W`` of shape ``out x fan_in`` (a conv weight
``(out, in/groups, kh, kw)`` is flattened to ``out x in/groups*kh*kw``) and wrapped with
``torch.nn.utils.parametrizations.orthogonal``: ``W`` has orthonormal columns when ``out >= fan_in``
and orthonormal rows otherwise. Starting from the trained weights (their QR projection), the model
is fine-tuned with the shared loop; then the parametrization is baked
(``remove_parametrizations(..., leave_parametrized=True)``) so the variant is a plain model with the
same spec, serialisable like any other.

Size convention. Write the matrix as ``m x n`` with ``m >= n`` (``m = max(out, fan_in)``,
``n = min(out, fan_in)``, i.e. the matrix is transposed first when it is wide). The issue's rule is
used: it counts ``ceil(m*(n+1)/2)`` stored parameters; biases and every other parameter stay dense
at their dtype. For a square matrix (``m == n``) this is ``n(n+1)/2``, exactly the compact Householder
(LAPACK ``geqrf``) storage of an orthogonal matrix. For a non-square matrix it is *not* a storable
count: the real Householder storage is ``m*n - n*(n-1)/2`` (one reflector of length ``m - j`` per
column ``j``), and the set of ``m x n`` matrices with orthonormal columns has dimension
``m*n - n*(n+1)/2``, which is larger than ``m*(n+1)/2`` whenever ``m > n + 1``. The rows therefore
follow the issue's convention (stated in ``size_convention``), and each variant's notes carry the
Householder count too (``householder_params``), so the honest number is never lost.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, cast

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import orthogonal

from compress.layer_spec import ModelSpec
from compress.size import SizeReport
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

ORTHOGONAL_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)
AUTO_MAX_ROWS = 2048
"""Above this many rows (m) PyTorch's Householder backward dominates: it grows with m²·n (mnist-cnn's
fc1, 6272×256: ~90 s per training step on 2 cores, bench/common.py's probe), so 'auto' freezes."""
CONVENTION = (
    "orthogonal m×n weight (m = max(out, fan_in) ≥ n = min(out, fan_in); conv weights flattened to "
    "out × in/groups·kh·kw) stores ceil(m·(n+1)/2) parameters at fp32; all other parameters dense"
)


class OrthogonalParams(TechniqueParams, LayerSelection, FineTune):
    """Which layers to make orthogonal, and how long to fine-tune them."""

    orthogonal_map: Literal["matrix_exp", "cayley", "householder"] | None = Field(
        default=None,
        description="PyTorch orthogonal map; default: matrix_exp for square weights, householder otherwise.",
    )
    train_orthogonal: Literal["auto", "yes", "no"] = Field(
        default="auto",
        description="Fine-tune through the parametrization ('yes'), or project once, freeze those weights and "
        f"fine-tune the rest ('no'); 'auto': 'no' when a matrix has more than {AUTO_MAX_ROWS} rows.",
    )


class _MatrixView(nn.Module):
    """Parametrization: a weight of any rank seen as the ``out x fan_in`` matrix that ``orth`` keeps
    orthogonal (``orth`` is the parametrization ``torch.nn.utils.parametrizations.orthogonal``
    registers, which on a 4-d tensor would otherwise treat each ``kh x kw`` kernel separately)."""

    def __init__(self, orth: nn.Module, shape: torch.Size) -> None:
        super().__init__()
        self.orth = orth
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.orth(x).reshape(self.shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        right_inverse = self.orth.right_inverse
        return right_inverse(weight.reshape(self.shape[0], -1))  # type: ignore[operator]


def matrix_dims(weight: torch.Tensor) -> tuple[int, int]:
    """``(m, n)`` with ``m >= n`` of the weight seen as an ``out x fan_in`` matrix."""
    out = weight.shape[0]
    fan_in = weight.numel() // out
    return max(out, fan_in), min(out, fan_in)


def orthogonal_stored_params(m: int, n: int) -> int:
    """Parameters counted for an orthogonal ``m x n`` matrix (``m >= n``): the issue's ``m(n+1)/2``."""
    return math.ceil(m * (n + 1) / 2)


def householder_params(m: int, n: int) -> int:
    """Compact Householder storage of an ``m x n`` (``m >= n``) matrix with orthonormal columns."""
    return m * n - n * (n - 1) // 2


def orthogonality_error(weight: torch.Tensor) -> float:
    """``max |QᵀQ - I|`` of the weight seen as ``out x fan_in``, transposed so that it is tall."""
    q = weight.detach().reshape(weight.shape[0], -1).double()
    if q.shape[0] < q.shape[1]:
        q = q.T
    eye = torch.eye(q.shape[1], dtype=q.dtype)
    return float((q.T @ q - eye).abs().max())


def orthogonalize(model: nn.Module, layers: list[str], orthogonal_map: str | None = None) -> nn.Module:
    """Register the orthogonal parametrization on ``model``'s ``layers`` (in place; returns ``model``).

    The starting point is the QR projection of the current weights (PyTorch's ``right_inverse``).
    """
    modules = dict(model.named_modules())
    for name in layers:
        module = modules[name]
        weight = module.weight
        out = weight.shape[0]
        holder = nn.Linear(weight.numel() // out, out, bias=False)
        orthogonal(holder, orthogonal_map=orthogonal_map)
        plist = cast(nn.ModuleDict, holder.parametrizations)["weight"]
        orth = cast(nn.ModuleList, plist)[0]
        parametrize.register_parametrization(module, "weight", _MatrixView(orth, weight.shape), unsafe=True)
    return model


@torch.no_grad()
def project(model: nn.Module, layers: list[str]) -> nn.Module:
    """Set each weight to its QR projection (orthonormal columns of the tall view, R's diagonal made
    positive): the starting point ``orthogonalize`` gives, without registering a parametrization,
    whose set-up for a 6272×256 matrix alone takes ~800 MB in PyTorch."""
    modules = dict(model.named_modules())
    for name in layers:
        weight = modules[name].weight
        w = weight.reshape(weight.shape[0], -1)
        wide = w.shape[0] < w.shape[1]
        q, r = torch.linalg.qr(w.T if wide else w, mode="reduced")
        q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
        weight.copy_((q.T if wide else q).reshape(weight.shape))
    return model


def bake(model: nn.Module, layers: list[str]) -> nn.Module:
    """Replace each parametrized weight by its current (orthogonal) value: a plain model again."""
    modules = dict(model.named_modules())
    for name in layers:
        module = modules[name]
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
        with torch.no_grad():
            module.weight.data = module.weight.data.contiguous()  # the baked value may be a transposed view
    return model


def orthogonal_size(model: nn.Module, layers: list[str]) -> SizeReport:
    """Size under :data:`CONVENTION`: orthogonal weights at ``ceil(m(n+1)/2)``, the rest dense."""
    modules = dict(model.named_modules())
    orth_weights = {id(modules[name].weight) for name in layers}
    n_params = nbytes = nonzero = 0
    for p in model.parameters():
        if id(p) in orth_weights:
            count = orthogonal_stored_params(*matrix_dims(p))
            n_params += count
            nbytes += count * p.element_size()
            nonzero += count
        else:
            n_params += p.numel()
            nbytes += p.numel() * p.element_size()
            nonzero += int(torch.count_nonzero(p.detach()))
    return SizeReport(n_params, nbytes, nonzero, CONVENTION)


ELIGIBLE_WHAT = "Conv2d/Linear layers"


def check_layers(spec: ModelSpec, params: OrthogonalParams) -> None:
    """Named layers must exist and be Conv2d/Linear (UnknownLayerError listing those that are)."""
    if params.layers:
        model = structure(spec)
        select_layers(model, params, eligible_layers(model, spec, params), ELIGIBLE_WHAT)


def eligible_layers(model: nn.Module, spec: ModelSpec, params: OrthogonalParams) -> list[str]:
    """Conv2d/Linear layers, heaviest (most weight elements) first."""
    return weighted_layers(model, ORTHOGONAL_TYPES)


def apply(model: nn.Module, spec: ModelSpec, params: OrthogonalParams, ctx: Context) -> Variant:
    layers = select_layers(model, params, eligible_layers(model, spec, params), ELIGIBLE_WHAT)
    if not layers:
        raise ValueError("orthogonal: the model has no float Conv2d/Linear layers to make orthogonal")
    ctx.report(0.0, f"orthogonalizing {', '.join(layers)}")
    seed_everything(params.seed)
    new = copy.deepcopy(model)
    modules = dict(new.named_modules())
    dims = {name: matrix_dims(modules[name].weight) for name in layers}
    mode = params.train_orthogonal
    if mode == "auto":
        mode = "no" if max(m for m, _ in dims.values()) > AUTO_MAX_ROWS else "yes"
    sub = ctx.sub(0.05, 0.95, "fine-tune: ")
    cfg = TrainConfig(epochs=params.epochs, lr=params.lr, batch_size=params.batch_size, seed=params.seed)
    if mode == "yes":
        orthogonalize(new, layers, params.orthogonal_map)
        train(new, ctx.data, cfg, sub.progress, ctx.should_cancel)
        errors = {name: orthogonality_error(modules[name].weight) for name in layers}
        bake(new, layers)
    else:  # projected once, kept fixed: the other parameters (biases included) adapt around it
        project(new, layers)
        errors = {name: orthogonality_error(modules[name].weight) for name in layers}
        frozen = [modules[name].weight for name in layers]
        for w in frozen:
            w.requires_grad_(False)
        try:
            train(new, ctx.data, cfg, sub.progress, ctx.should_cancel)
        finally:
            for w in frozen:
                w.requires_grad_(True)
    new.eval()
    notes = {
        "orthogonal_weights_trained": mode == "yes",
        "orthogonal_layers": layers,
        "max_orthogonality_error": {name: float(f"{e:.3g}") for name, e in errors.items()},
        "matrix_m_n": {name: list(mn) for name, mn in dims.items()},
        "householder_params": {name: householder_params(*mn) for name, mn in dims.items()},
    }
    ctx.report(1.0, "orthogonal weights baked")
    return Variant(new, spec, orthogonal_size(new, layers), notes, label_suffix=", ".join(layers))


TECHNIQUE = register_technique(
    Technique(
        name="orthogonal",
        description="Constrain the selected Conv2d/Linear weights to orthogonal matrices "
        "(torch.nn.utils.parametrizations.orthogonal), fine-tune, then bake the weights.",
        params_model=OrthogonalParams,
        apply=apply,
        search_axis=SearchAxis(kind="layers", eligible=eligible_layers),
        check_params_against=check_layers,
    )
)
