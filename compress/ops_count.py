"""Operations per sample, counted the way the course does, with a per-layer table.

An n x n filter over an m x m image is (m - n + 1)^2 applications of n^2 multiply-accumulates per
input/output channel pair; in general ``output positions x k_h*k_w x C_in/groups x C_out`` (this
covers padding and stride, because the output size already does). A linear layer is in x out.
Every activation function adds one operation per output element. ``flops = 2 x macs`` is what
``torch.utils.flop_counter.FlopCounterMode`` counts for conv and linear layers.

``other_ops`` counts what is neither a MAC nor an activation, with the module path it happens in:
one per element for normalisation (a folded multiply-add) and for elementwise arithmetic written in a
block's ``forward`` (residual additions, squeeze-excitation scaling: ``layer1.0`` in a ResNet), and one
per element of each pooling window (adaptive pooling: one per input element).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

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
    other_ops: int = 0
    macs_share: float = 0.0
    params_share: float = 0.0


@dataclass
class OpsReport:
    macs: int
    sparse_macs: int
    activation_ops: int
    layers: list[LayerOps] = field(default_factory=list)
    other_ops: int = 0

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


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.MaxPool1d, nn.AvgPool1d)
_ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)
_T = torch.Tensor
_ELEMENTWISE = {
    torch.add, torch.sub, torch.mul, torch.div, _T.add, _T.add_, _T.sub, _T.sub_, _T.mul, _T.mul_, _T.div, _T.div_,
    _T.__add__, _T.__iadd__, _T.__radd__, _T.__sub__, _T.__isub__, _T.__rsub__,
    _T.__mul__, _T.__imul__, _T.__rmul__, _T.__truediv__, _T.__itruediv__,
}  # fmt: skip


def _other_ops(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> int:
    """Normalisation and pooling work of one call (batch 1)."""
    if isinstance(mod, _NORMS) or "BatchNorm" in type(mod).__name__:
        return out.numel()
    if isinstance(mod, _POOLS):
        k = mod.kernel_size
        return out.numel() * (math.prod(k) if isinstance(k, tuple) else k ** (out.dim() - 2))
    if isinstance(mod, _ADAPTIVE_POOLS) and inputs and isinstance(inputs[0], torch.Tensor):
        return inputs[0].numel()
    return 0


class _BlockArithmetic(TorchFunctionMode):
    """Counts elementwise arithmetic written in a block's own ``forward`` (not inside a counted unit)."""

    def __init__(self, model: nn.Module, units: set[str]) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.units = units
        self.counts: dict[str, int] = {}
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._enter(name)))
            self.handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Any:
        def hook(*_: Any) -> None:
            self.stack.append(name)

        return hook

    def _leave(self, *_: Any) -> None:
        self.stack.pop()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        if func in _ELEMENTWISE and self.stack and self.stack[-1] not in self.units and isinstance(out, torch.Tensor):
            self.counts[self.stack[-1]] = self.counts.get(self.stack[-1], 0) + out.numel()
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


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
            other = _other_ops(mod, inputs, out)
            prev = rows.get(name)
            if prev is not None:  # a module used twice (shared activation) counts twice
                prev.macs += macs
                prev.sparse_macs += sparse
                prev.activation_ops += act
                prev.other_ops += other
                prev.output_shape = shape
                return
            rows[name] = LayerOps(name, type(mod).__name__, shape, module_params(mod), macs, sparse, act, other)

        return hook

    for name, module in units:
        handles.append(module.register_forward_hook(hook_for(name, module)))
    was_training = model.training
    model.eval()
    blocks = _BlockArithmetic(model, {n for n, _ in units})
    try:
        with torch.no_grad(), blocks:
            model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        blocks.remove()
        model.train(was_training)
    modules = dict(model.named_modules())
    for name, n in blocks.counts.items():
        rows.setdefault(name, LayerOps(name or "model", type(modules[name]).__name__, (), 0, 0, 0, 0)).other_ops += n
    order = {n: i for i, n in enumerate(modules)}
    ordered = sorted(rows.values(), key=lambda r: order.get(r.name, -1))
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
        other_ops=sum(r.other_ops for r in ordered),
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
