"""One typed record for every comparison row: size, operations, accuracy and latency."""

from __future__ import annotations

import statistics
import time

import torch
from pydantic import BaseModel, Field
from torch import nn

from compress.correctness import pack_correct
from compress.datasets import DatasetSplit
from compress.latency_conditions import LatencyConditions, latency_conditions
from compress.layer_spec import ModelSpec
from compress.ops_count import count_ops
from compress.persistence import model_to_bytes
from compress.size import SizeReport, dense_size
from compress.stats import wilson_interval
from compress.training import evaluate_samples


class LayerRow(BaseModel):
    name: str
    type: str
    output_shape: list[int]
    params: int
    macs: int
    activation_ops: int
    sparse_macs: int
    macs_share: float = Field(description="This layer's share of the model's MACs (0-1).")
    params_share: float = Field(description="This layer's share of the model's parameters (0-1).")


class Measurement(BaseModel):
    """Everything the comparison table shows about one variant. Units in the field names."""

    n_params: int = Field(description="Parameters that must be stored to rebuild the weights.")
    bytes: int = Field(description="Bytes of those parameters at their real dtype.")
    nonzero_params: int
    file_bytes: int | None = Field(default=None, description="Size of the serialized artifact.")
    size_convention: str = "dense"
    macs: int = Field(description="Multiply-accumulates per sample (course formula).")
    activation_ops: int = Field(description="One per activation output element, per sample.")
    ops: int = Field(description="macs + activation_ops.")
    flops: int = Field(description="2 x macs (FlopCounterMode's convention).")
    sparse_macs: int = Field(description="MACs with non-zero weights only.")
    accuracy: float | None = Field(default=None, description="Top-1 % on the whole evaluation split.")
    loss: float | None = None
    eval_samples: int | None = None
    accuracy_ci_low: float | None = Field(default=None, description="95 % Wilson interval's low end, in %.")
    accuracy_ci_high: float | None = Field(default=None, description="95 % Wilson interval's high end, in %.")
    correct: str | None = Field(
        default=None,
        description="Which evaluation samples were right: numpy.packbits of one bit per sample (split order), "
        "base64 (compress.correctness); compared with the base model's for a paired test.",
    )
    latency_ms_bs1: float | None = Field(default=None, description="Median ms per batch of 1.")
    latency_ms_bs64: float | None = Field(default=None, description="Median ms per batch of 64.")
    torch_threads: int = Field(default_factory=torch.get_num_threads)
    latency_conditions: LatencyConditions | None = Field(
        default=None, description="Threads, quantized engine, PyTorch, CPU and host the latencies were measured under."
    )
    layers: list[LayerRow] = Field(default_factory=list)


@torch.inference_mode()
def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3
) -> float:
    """Median wall time in milliseconds of one forward pass over ``batch_size`` samples."""
    model.eval()
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def measure(
    model: nn.Module,
    spec: ModelSpec,
    data: DatasetSplit | None = None,
    size: SizeReport | None = None,
    latency: bool = True,
    latency_runs: int = 20,
    file_size: bool = True,
) -> Measurement:
    """Measure ``model``: size (``size`` overrides the dense convention), operations, accuracy on
    the whole evaluation split (when ``data`` is given) and median latency at batch 1 and 64."""
    model.eval()
    shape = tuple(spec.input_shape)
    ops = count_ops(model, shape)
    size = size or dense_size(model)
    m = Measurement(
        n_params=size.n_params,
        bytes=size.bytes,
        nonzero_params=size.nonzero_params,
        size_convention=size.convention,
        macs=ops.macs,
        activation_ops=ops.activation_ops,
        ops=ops.ops,
        flops=ops.flops,
        sparse_macs=ops.sparse_macs,
        layers=[
            LayerRow(
                name=r.name,
                type=r.type,
                output_shape=list(r.output_shape),
                params=r.params,
                macs=r.macs,
                activation_ops=r.activation_ops,
                sparse_macs=r.sparse_macs,
                macs_share=round(r.macs_share, 6),
                params_share=round(r.params_share, 6),
            )
            for r in ops.layers
        ],
    )
    if file_size:
        m.file_bytes = len(model_to_bytes(model, spec))
    if data is not None:
        m.accuracy, m.loss, correct = evaluate_samples(model, data)
        m.eval_samples = len(data.eval_y)
        m.correct = pack_correct(correct)
        m.accuracy_ci_low, m.accuracy_ci_high = wilson_interval(int(correct.sum().item()), m.eval_samples)
    if latency:
        m.latency_conditions = latency_conditions(model)
        m.latency_ms_bs1 = measure_latency(model, shape, 1, runs=latency_runs)
        m.latency_ms_bs64 = measure_latency(model, shape, 64, runs=latency_runs)
    return m
