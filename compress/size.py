"""Size of the weights: parameters that must be stored, and their bytes at the real dtype.

The default convention is dense storage: every parameter at its dtype (fp32 = 4 bytes); int8
quantized weights at 1 byte plus a float32 scale and an int32 zero point per tensor or per output
channel. Techniques whose storage differs (orthogonal, sparse) build their own SizeReport with
the helpers below and say the convention in ``convention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from compress.ops_count import is_conv, is_linear


@dataclass
class SizeReport:
    n_params: int
    bytes: int
    nonzero_params: int
    convention: str = "dense"


def _qparams_bytes(w: torch.Tensor) -> int:
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        return w.q_per_channel_scales().numel() * 8
    return 8


def _quantized_weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    if callable(w) and not isinstance(w, torch.Tensor):
        w = w()
    return w if isinstance(w, torch.Tensor) and w.is_quantized else None


def _quantized_bias(module: nn.Module) -> torch.Tensor | None:
    b = getattr(module, "bias", None)
    if callable(b) and not isinstance(b, torch.Tensor):
        b = b()
    return b if isinstance(b, torch.Tensor) else None


def dense_size(model: nn.Module) -> SizeReport:
    """Every parameter stored densely at its dtype; quantized weights at 1 byte + qparams."""
    n = nbytes = nonzero = 0
    for p in model.parameters():
        n += p.numel()
        nbytes += p.numel() * p.element_size()
        nonzero += int(torch.count_nonzero(p.detach()))
    quantized = False
    for module in model.modules():
        if not (is_conv(module) or is_linear(module)):
            continue
        w = _quantized_weight(module)
        if w is None:
            continue
        quantized = True
        n += w.numel()
        nbytes += w.numel() * w.element_size() + _qparams_bytes(w)
        nonzero += int(torch.count_nonzero(w.int_repr()))
        b = _quantized_bias(module)
        if b is not None:
            n += b.numel()
            nbytes += b.numel() * b.element_size()
            nonzero += int(torch.count_nonzero(b))
    convention = (
        "dense; int8 weights 1 B + fp32 scale and int32 zero point per channel/tensor" if quantized else "dense"
    )
    return SizeReport(n, nbytes, nonzero, convention)


def sparse_size(model: nn.Module, index_bytes: int = 4, min_numel: int = 2) -> SizeReport:
    """Weights stored as (value, index) pairs for the survivors of pruned conv/linear weights.

    Format: COO with one ``index_bytes``-wide flat index per surviving weight; other parameters
    (biases, norms) stay dense. A weight matrix is stored densely when that is smaller.
    """
    n = nbytes = nonzero = 0
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            nz = int(torch.count_nonzero(p.detach()))
            nonzero += nz
            dense = p.numel() * p.element_size()
            if pname == "weight" and p.numel() >= min_numel and (is_conv(module) or is_linear(module)):
                sparse = nz * (p.element_size() + index_bytes)
                if sparse < dense:
                    n += nz
                    nbytes += sparse
                    continue
            n += p.numel()
            nbytes += dense
    return SizeReport(n, nbytes, nonzero, f"sparse COO: survivors at dtype + {index_bytes}-byte index each")
