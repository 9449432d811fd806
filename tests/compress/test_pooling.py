"""compress.pooling: the NCHW inference path computes exactly what PyTorch's pooling kernels do,
is the path actually taken at inference, and leaves training, quantized and channels-last input
to PyTorch."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from compress import pooling
from compress.layer_spec import LayerSpec, ModelSpec, build_model

CONFIGS = [
    # kernel, stride, padding, dilation
    (2, 2, 0, 1),
    (2, None, 0, 1),
    (3, 2, 1, 1),
    (3, 1, 1, 1),
    (3, 3, 0, 1),
    ((2, 3), (2, 1), (1, 0), 1),
    (2, 1, 0, 2),
]
AVG_CONFIGS = [c for c in CONFIGS if c[3] == 1]  # AvgPool2d has no dilation
SHAPES = [(4, 3, 28, 28), (2, 5, 7, 7), (1, 1, 9, 6), (3, 2, 5, 11)]


class OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _inputs(shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    x.view(-1)[::7] = float("nan")
    x.view(-1)[3::11] = float("-inf")
    x.view(-1)[5::13] = float("inf")
    return x


def _ours_and_pytorchs(ours, pytorchs):  # noqa: ANN001, ANN202
    """Both results under inference mode; None once both have refused the input alike."""
    with torch.inference_mode():
        try:
            expected = pytorchs()
        except RuntimeError:
            with pytest.raises(RuntimeError):
                ours()
            return None
        return ours(), expected


@pytest.mark.parametrize(("config", "shape"), list(itertools.product(CONFIGS, SHAPES)))
def test_max_pool_matches_pytorch_exactly(config, shape) -> None:
    kernel, stride, padding, dilation = config
    x = _inputs(shape)
    layer = pooling.MaxPool2d(kernel, stride, padding, dilation)
    both = _ours_and_pytorchs(lambda: layer(x), lambda: F.max_pool2d(x, kernel, stride, padding, dilation))
    if both is None:
        return
    got, expected = both
    assert got.shape == expected.shape
    assert torch.equal(got.isnan(), expected.isnan())
    assert torch.equal(got.nan_to_num(0.0), expected.nan_to_num(0.0))


@pytest.mark.parametrize(("config", "shape"), list(itertools.product(AVG_CONFIGS, SHAPES)))
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_pytorch(config, shape, count_include_pad) -> None:
    kernel, stride, padding, _ = config
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    layer = pooling.AvgPool2d(kernel, stride, padding, count_include_pad=count_include_pad)
    both = _ours_and_pytorchs(
        lambda: layer(x), lambda: F.avg_pool2d(x, kernel, stride, padding, count_include_pad=count_include_pad)
    )
    if both is None:
        return
    got, expected = both
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_avg_pool_divisor_override() -> None:
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        got = pooling.AvgPool2d(2, divisor_override=3)(x)
    torch.testing.assert_close(got, F.avg_pool2d(x, 2, divisor_override=3))


@pytest.mark.parametrize(
    ("layer", "slow_op"),
    [(pooling.MaxPool2d(2), "aten.max_pool2d"), (pooling.AvgPool2d(2), "aten.avg_pool2d")],
)
def test_inference_takes_the_strided_path_and_training_pytorchs(layer, slow_op) -> None:
    x = torch.randn(2, 4, 8, 8)
    with torch.inference_mode(), OpLog() as log:
        layer(x)
    assert not [op for op in log.ops if op.startswith(slow_op)], log.ops

    with OpLog() as log:
        layer(x.clone().requires_grad_())
    assert [op for op in log.ops if op.startswith(slow_op)], log.ops

    x_cl = x.contiguous(memory_format=torch.channels_last)  # already fast in PyTorch
    with torch.inference_mode(), OpLog() as log:
        layer(x_cl)
    assert [op for op in log.ops if op.startswith(slow_op)], log.ops


def test_training_gradients_are_pytorchs() -> None:
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    pooling.MaxPool2d(2)(x).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    nn.MaxPool2d(2)(x).sum().backward()
    assert torch.equal(ours, x.grad)


def test_quantized_input_goes_to_pytorch() -> None:
    q = torch.quantize_per_tensor(torch.rand(1, 2, 4, 4), 0.1, 0, torch.quint8)
    out = pooling.MaxPool2d(2)(q)
    assert out.is_quantized
    assert torch.equal(out.dequantize(), F.max_pool2d(q.dequantize(), 2))


def test_built_models_use_them_and_they_are_still_nn_pools() -> None:
    spec = ModelSpec(
        input_shape=(1, 8, 8),
        num_classes=2,
        layers=[
            LayerSpec(name="pool", type="MaxPool2d", args={"kernel_size": 2}),
            LayerSpec(name="avg", type="AvgPool2d", args={"kernel_size": 2}),
            LayerSpec(name="flatten", type="Flatten"),
            LayerSpec(name="fc", type="Linear", args={"in_features": 4, "out_features": 2}),
        ],
    )
    model = build_model(spec)
    assert type(model.pool) is pooling.MaxPool2d and isinstance(model.pool, nn.MaxPool2d)
    assert type(model.avg) is pooling.AvgPool2d and isinstance(model.avg, nn.AvgPool2d)
    assert repr(model.pool) == repr(nn.MaxPool2d(2))
