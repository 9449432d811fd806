"""One typed record for every comparison row: size, operations, accuracy and latency."""

from __future__ import annotations

import statistics
import time

import torch
from pydantic import BaseModel, Field
from torch import nn

from compress.allocator import steady_allocator
from compress.correctness import pack_correct
from compress.datasets import DatasetSplit
from compress.latency_conditions import LatencyConditions, latency_conditions
from compress.layer_spec import ModelSpec
from compress.ops_count import OpsReport, count_ops
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
    other_ops: int = Field(default=0, description="Normalisation, pooling and block arithmetic (residual adds).")
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
    other_ops: int = Field(
        default=0,
        description="Per sample: one per normalised element, per pooling-window element and per element of "
        "arithmetic in a block's forward (residual additions, squeeze-excitation scaling); not in ops.",
    )
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
    latency_ms_bs1_p25: float | None = Field(default=None, description="25th percentile of the batch-1 timings.")
    latency_ms_bs1_p75: float | None = Field(default=None, description="75th percentile of the batch-1 timings.")
    latency_ms_bs64_p25: float | None = Field(default=None, description="25th percentile of the batch-64 timings.")
    latency_ms_bs64_p75: float | None = Field(default=None, description="75th percentile of the batch-64 timings.")
    ort_latency_ms_bs1: float | None = Field(default=None, description="onnxruntime (CPU) median ms per batch of 1.")
    ort_latency_ms_bs64: float | None = Field(default=None, description="onnxruntime (CPU) median ms per batch of 64.")
    torch_threads: int = Field(default_factory=torch.get_num_threads)
    latency_conditions: LatencyConditions | None = Field(
        default=None, description="Threads, quantized engine, PyTorch, CPU and host the latencies were measured under."
    )
    layers: list[LayerRow] = Field(default_factory=list)


class LatencyStats(BaseModel):
    """Median and spread (25th and 75th percentiles) of timed forward passes, in ms."""

    median: float
    p25: float
    p75: float
    runs: int

    @property
    def speed(self) -> float:
        """The figure speedups compare: :func:`speed_figure` of these timings."""
        return speed_figure(self.p25, self.median)


def speed_figure(p25: float | None, median: float) -> float:
    """What a speedup divides: the lower quartile of the timed passes, else (figures recorded without it) the
    median. Load from other processes only ever lengthens a pass, and on a shared machine it comes in bursts
    of seconds that slow a quarter to a half of some networks' passes: a ratio of medians then swung by ±30 %
    between two sessions on the same files, one of lower quartiles by about ±10 % (BENCHMARKS.md)."""
    return p25 if p25 is not None else median


def latency_stats(times_ms: list[float]) -> LatencyStats:
    """The median and quartiles of ``times_ms`` (one timing: all three equal)."""
    if len(times_ms) < 2:
        t = times_ms[0]
        return LatencyStats(median=t, p25=t, p75=t, runs=len(times_ms))
    q1, q2, q3 = statistics.quantiles(times_ms, n=4, method="inclusive")
    return LatencyStats(median=statistics.median(times_ms), p25=q1, p75=q3, runs=len(times_ms))


@torch.inference_mode()
def time_forward(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3
) -> list[float]:
    """Wall times in milliseconds of ``runs`` forward passes over ``batch_size`` samples, after ``warmup``
    (with the allocator kept steady: :mod:`compress.allocator`)."""
    steady_allocator()
    model.eval()
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def measure_latency(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3
) -> float:
    """Median wall time in milliseconds of one forward pass over ``batch_size`` samples."""
    return statistics.median(time_forward(model, input_shape, batch_size, runs, warmup))


def measure(
    model: nn.Module,
    spec: ModelSpec,
    data: DatasetSplit | None = None,
    size: SizeReport | None = None,
    latency: bool = True,
    latency_runs: int = 20,
    file_size: bool = True,
    ops: OpsReport | None = None,
) -> Measurement:
    """Measure ``model``: size (``size`` overrides the dense convention), operations, accuracy on
    the whole evaluation split (when ``data`` is given) and median latency at batch 1 and 64. ``ops``
    overrides the operations counted by forward hooks (for programs whose layers hooks cannot see)."""
    model.eval()
    shape = tuple(spec.input_shape)
    ops = ops or count_ops(model, shape)
    size = size or dense_size(model)
    m = Measurement(
        n_params=size.n_params,
        bytes=size.bytes,
        nonzero_params=size.nonzero_params,
        size_convention=size.convention,
        macs=ops.macs,
        activation_ops=ops.activation_ops,
        other_ops=ops.other_ops,
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
                other_ops=r.other_ops,
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
        for bs in (1, 64):
            stats = latency_stats(time_forward(model, shape, bs, runs=latency_runs))
            setattr(m, f"latency_ms_bs{bs}", stats.median)
            setattr(m, f"latency_ms_bs{bs}_p25", stats.p25)
            setattr(m, f"latency_ms_bs{bs}_p75", stats.p75)
    return m
