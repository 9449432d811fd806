"""Max and average pooling that are fast on contiguous (NCHW) CPU tensors at inference.

PyTorch 2.14's CPU kernels for ``max_pool2d`` and ``avg_pool2d`` on contiguous NCHW tensors are
an order of magnitude slower than on channels-last ones (measured here, 2 threads, 64x32x28x28:
max 4.6 ms vs 0.43 ms, average 2.7 ms vs 0.32 ms), so a 2x2 pool took about half of mnist-cnn's fp32
inference and hid what the other layers cost. The same result is a handful of element-wise
``maximum`` / ``add`` over the k*k strided views of the input (0.40 ms for that max pool).

These subclasses take that path only where it computes exactly what PyTorch does: no autograd
graph to build, a floating-point NCHW-contiguous CPU tensor, no ``ceil_mode``, no indices, and
for the average only padding that counts in the divisor. Everything else (training, quantized
tensors, channels-last input) goes to PyTorch's own kernel. They are still ``nn.MaxPool2d`` /
``nn.AvgPool2d`` (same arguments, state, repr and quantization handling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair


def _fast_path(x: torch.Tensor) -> bool:
    return (
        x.dim() == 4
        and x.device.type == "cpu"
        and x.is_floating_point()
        and not (x.requires_grad and torch.is_grad_enabled())
        and x.is_contiguous()
    )


def _windows(
    x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]
) -> list[torch.Tensor] | None:
    """The k*k strided views whose element-wise reduction is the pooling, or None if empty."""
    h, w = x.shape[-2:]
    h_out = (h - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    w_out = (w - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    if h_out <= 0 or w_out <= 0:
        return None
    views = []
    for i in range(kernel[0]):
        top = i * dilation[0]
        for j in range(kernel[1]):
            left = j * dilation[1]
            views.append(
                x[
                    ...,
                    top : top + stride[0] * (h_out - 1) + 1 : stride[0],
                    left : left + stride[1] * (w_out - 1) + 1 : stride[1],
                ]
            )
    return views


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose inference on NCHW CPU tensors takes the strided-views path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.return_indices or self.ceil_mode or not _fast_path(x):
            return super().forward(x)
        kernel, stride = _pair(self.kernel_size), _pair(self.stride if self.stride is not None else self.kernel_size)
        padding, dilation = _pair(self.padding), _pair(self.dilation)
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            return super().forward(x)  # PyTorch's own error message
        if padding != (0, 0):
            x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), value=float("-inf"))
        views = _windows(x, kernel, stride, dilation)
        if views is None:
            return super().forward(x)
        out = views[0]
        for view in views[1:]:
            out = torch.maximum(out, view)  # NaN propagates, as in max_pool2d
        return out.contiguous() if len(views) == 1 else out


class AvgPool2d(nn.AvgPool2d):
    """``nn.AvgPool2d`` whose inference on NCHW CPU tensors takes the strided-views path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = _pair(self.padding)
        if self.ceil_mode or not _fast_path(x) or (padding != (0, 0) and not self.count_include_pad):
            return super().forward(x)
        kernel, stride = _pair(self.kernel_size), _pair(self.stride if self.stride is not None else self.kernel_size)
        if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
            return super().forward(x)
        if padding != (0, 0):
            x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
        views = _windows(x, kernel, stride, (1, 1))
        if views is None:
            return super().forward(x)
        out = views[0].clone()
        for view in views[1:]:
            out.add_(view)  # the window's elements in PyTorch's order (row by row)
        return out.div_(self.divisor_override or kernel[0] * kernel[1])
