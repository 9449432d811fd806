"""Operations per sample, counted the way the course does, with a per-layer table.

An n x n filter over an m x m image is (m - n + 1)^2 applications of n^2 multiply-accumulates per
input/output channel pair; in general ``output positions x k_h*k_w x C_in/groups x C_out`` (this
covers padding and stride, because the output size already does). A linear layer is in x out.
Every activation function adds one operation per output element. ``flops = 2 x macs`` is what
``torch.utils.flop_counter.FlopCounterMode`` counts for conv and linear layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compress.layer_spec import ACTIVATION_TYPES


@dataclass
class LayerOps:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    sparse_macs: int
    activation_ops: int
    macs_share: float = 0.0
    params_share: float = 0.0


@dataclass
class OpsReport:
    macs: int
    sparse_macs: int
    activation_ops: int
    layers: list[LayerOps] = field(default_factory=list)

    @property
    def ops(self) -> int:
        return self.macs + self.activation_ops

    @property
    def flops(self) -> int:
        return 2 * self.macs


def _weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    if callable(w) and not isinstance(w, torch.Tensor):
        w = w()  # quantized modules expose weight()
    if isinstance(w, torch.Tensor):
        return w.dequantize() if w.is_quantized else w
    return None


def is_conv(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("in_channels", "out_channels", "kernel_size", "groups"))


def is_linear(module: nn.Module) -> bool:
    return hasattr(module, "in_features") and hasattr(module, "out_features")


def _fused_activation(module: nn.Module) -> bool:
    """Quantized fused modules (ConvReLU2d, LinearReLU) apply ReLU inside one leaf."""
    name = type(module).__name__
    return "ReLU" in name and (is_conv(module) or is_linear(module))


def _is_unit(module: nn.Module) -> bool:
    if is_conv(module) or is_linear(module) or isinstance(module, ACTIVATION_TYPES):
        return True
    children = [n for n, _ in module.named_children() if n != "parametrizations"]
    return not children


def layer_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules the table has a row for: conv/linear/activation and other leaves, in order."""
    units: list[tuple[str, nn.Module]] = []

    def walk(module: nn.Module, prefix: str) -> None:
        if prefix and _is_unit(module):
            units.append((prefix, module))
            return
        for name, child in module.named_children():
            if name == "parametrizations":
                continue
            walk(child, f"{prefix}.{name}" if prefix else name)

    walk(model, "")
    return units or [("model", model)]


def module_params(module: nn.Module) -> int:
    n = sum(p.numel() for p in module.parameters())
    if n == 0 and (is_conv(module) or is_linear(module)):
        w = _weight(module)
        n = w.numel() if w is not None else 0
        b = getattr(module, "bias", None)
        b = b() if callable(b) and not isinstance(b, torch.Tensor) else b
        n += b.numel() if isinstance(b, torch.Tensor) else 0
    return n


def count_ops(model: nn.Module, input_shape: tuple[int, ...]) -> OpsReport:
    """Count per-sample MACs, sparse MACs and activation ops with one forward pass of batch 1."""
    units = layer_units(model)
    rows: dict[str, LayerOps] = {}
    handles = []

    def hook_for(name: str, module: nn.Module):  # noqa: ANN202
        def hook(mod: Any, inputs: tuple, output: torch.Tensor) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if not isinstance(out, torch.Tensor):
                return
            shape = tuple(out.shape[1:])
            per_sample = math.prod(shape)
            macs = sparse = act = 0
            w = _weight(mod)
            if is_conv(mod) and w is not None:
                positions = math.prod(out.shape[2:])
                k = math.prod(mod.kernel_size) if isinstance(mod.kernel_size, tuple) else mod.kernel_size
                macs = positions * k * (mod.in_channels // mod.groups) * mod.out_channels
                sparse = positions * int(torch.count_nonzero(w))
            elif is_linear(mod) and w is not None:
                rows_per_sample = per_sample // mod.out_features
                macs = rows_per_sample * mod.in_features * mod.out_features
                sparse = rows_per_sample * int(torch.count_nonzero(w))
            if isinstance(mod, ACTIVATION_TYPES) or _fused_activation(mod):
                act = per_sample
            prev = rows.get(name)
            if prev is not None:  # a module used twice (shared activation) counts twice
                prev.macs += macs
                prev.sparse_macs += sparse
                prev.activation_ops += act
                prev.output_shape = shape
                return
            rows[name] = LayerOps(name, type(mod).__name__, shape, module_params(mod), macs, sparse, act)

        return hook

    for name, module in units:
        handles.append(module.register_forward_hook(hook_for(name, module)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    ordered = [rows[n] for n, _ in units if n in rows]
    total_macs = sum(r.macs for r in ordered)
    total_params = sum(r.params for r in ordered)
    for r in ordered:
        r.macs_share = r.macs / total_macs if total_macs else 0.0
        r.params_share = r.params / total_params if total_params else 0.0
    return OpsReport(
        macs=total_macs,
        sparse_macs=sum(r.sparse_macs for r in ordered),
        activation_ops=sum(r.activation_ops for r in ordered),
        layers=ordered,
    )


def flop_counter_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one sample as PyTorch's own FlopCounterMode counts them (float models only)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
