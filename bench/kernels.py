"""The kernels behind the int8 and prune-channels latency ratios (``bench.latency``), one level down.

Three tables, each measured in interleaved rounds (median of the rounds' medians):
1. pooling at mnist-cnn's shapes (batch 64): PyTorch's kernel on NCHW and on channels-last tensors,
   and ``compress.pooling``'s strided-views path on NCHW;
2. mnist-cnn's three conv shapes (batch 64, with ReLU): fp32 (oneDNN via ``mkldnn_convolution``) and
   int8 with the fbgemm, x86 and onednn engines (random weights: the kernels' speed does not depend
   on them);
3. per layer of the trained mnist-cnn (``get_base``, cached under var/bench/): fp32, int8 fbgemm and
   int8 x86, each layer timed on the previous layer's real output.

Usage: python -m bench.kernels [--threads 2] [--rounds 5] [--skip-layers]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.table import Table  # noqa: E402
from torch import nn  # noqa: E402

from bench.common import common_args, console, get_base, machine_record, print_machine, run_job, set_threads  # noqa: E402
from compress import pooling  # noqa: E402

BATCH = 64
CONVS = [(1, 32, 28), (32, 64, 14), (64, 128, 7)]  # in, out channels, H = W (3x3, padding 1)
ENGINES = ("fbgemm", "x86", "onednn")


def _median_ms(fn: Callable[[], object], runs: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def interleaved(cases: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    per: dict[str, list[float]] = {k: [] for k in cases}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, fn in cases.items():
                per[name].append(_median_ms(fn))
    return {k: statistics.median(v) for k, v in per.items()}


def pooling_table(rounds: int) -> Table:
    t = Table(title=f"pooling, batch {BATCH}: ms per call (median of {rounds} interleaved rounds)")
    for col in ("layer", "input", "PyTorch NCHW", "PyTorch channels-last", "compress.pooling NCHW", "speed-up"):
        t.add_column(col, justify="left" if col in ("layer", "input") else "right")
    layers = [
        ("MaxPool2d(2)", nn.MaxPool2d(2), pooling.MaxPool2d(2)),
        ("AvgPool2d(2)", nn.AvgPool2d(2), pooling.AvgPool2d(2)),
        ("MaxPool2d(3, 2, 1)", nn.MaxPool2d(3, 2, 1), pooling.MaxPool2d(3, 2, 1)),
    ]
    for shape in ((BATCH, 32, 28, 28), (BATCH, 64, 14, 14)):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        x_cl = x.contiguous(memory_format=torch.channels_last)
        for label, plain, ours in layers:
            with torch.inference_mode():
                if not torch.allclose(plain(x), ours(x), rtol=1e-6, atol=1e-6):
                    raise AssertionError(f"{label}: compress.pooling differs from PyTorch")
            ms = interleaved({"nchw": partial(plain, x), "cl": partial(plain, x_cl), "ours": partial(ours, x)}, rounds)
            t.add_row(
                label,
                "×".join(map(str, shape)),
                f"{ms['nchw']:.3f}",
                f"{ms['cl']:.3f}",
                f"{ms['ours']:.3f}",
                f"{ms['nchw'] / ms['ours']:.1f}×",
            )
    return t


def _int8_conv(cin: int, cout: int, engine: str) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch.ao.nn.intrinsic.quantized as nniq

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        conv = nniq.ConvReLU2d(cin, cout, 3, padding=1)
        g = torch.Generator().manual_seed(cin)
        w = torch.quantize_per_channel(
            torch.randn(cout, cin, 3, 3, generator=g),
            torch.full((cout,), 0.01),
            torch.zeros(cout, dtype=torch.long),
            0,
            torch.qint8,
        )
        conv.set_weight_bias(w, torch.zeros(cout))  # packed for ``engine`` (its ops dispatch on the packing)
        conv.scale, conv.zero_point = 0.05, 0
    finally:
        torch.backends.quantized.engine = previous
    return conv


def conv_table(rounds: int) -> Table:
    t = Table(title=f"mnist-cnn's convs (3×3, padding 1, + ReLU), batch {BATCH}: ms per call")
    available = [e for e in ENGINES if e in torch.backends.quantized.supported_engines]
    for col in ("conv", "MMAC", "fp32", *[f"int8 {e}" for e in available]):
        t.add_column(col, justify="left" if col == "conv" else "right")
    for cin, cout, hw in CONVS:
        x = torch.randn(BATCH, cin, hw, hw, generator=torch.Generator().manual_seed(1))
        fp32 = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.ReLU()).eval()
        qx = torch.quantize_per_tensor(x.relu(), 0.02, 0, torch.quint8)
        cases: dict[str, Callable[[], object]] = {"fp32": partial(fp32, x)}
        for engine in available:
            conv = _int8_conv(cin, cout, engine)
            cases[engine] = partial(conv, qx)
        ms = interleaved(cases, rounds)
        macs = BATCH * cin * cout * 9 * hw * hw / 1e6
        t.add_row(f"{cin}→{cout} @ {hw}×{hw}", f"{macs:,.0f}", *[f"{ms[k]:.3f}" for k in cases])
    return t


def _per_layer(model: nn.Module, x: torch.Tensor, rounds: int) -> dict[str, float]:
    inputs: list[tuple[str, nn.Module, torch.Tensor]] = []
    with torch.inference_mode():
        for name, layer in model.named_children():
            inputs.append((name, layer, x))
            x = layer(x)
    return interleaved({name: partial(layer, inp) for name, layer, inp in inputs}, rounds)


def layer_table(args: argparse.Namespace) -> Table:
    base = get_base(args.data, args.seed, args.retrain, args.latency_runs)
    models = {"fp32": base.model.eval()}
    for engine in ("fbgemm", "x86"):
        job = run_job(base, "quantize-int8", {"backend": engine}, args.latency_runs, keep_model=True)
        if job.model is not None:
            models[f"int8 {engine}"] = job.model.eval()
    x = torch.randn(BATCH, *base.spec.input_shape, generator=torch.Generator().manual_seed(2))
    per = {label: _per_layer(model, x, args.rounds) for label, model in models.items()}
    t = Table(title=f"mnist-cnn per layer, batch {BATCH}: ms per call, each on the previous layer's output")
    t.add_column("layer")
    for label in models:
        t.add_column(label, justify="right")
    names = list(dict.fromkeys(n for p in per.values() for n in p))
    for name in names:
        t.add_row(name, *[f"{per[label][name]:.3f}" if name in per[label] else "" for label in models])
    t.add_row("sum", *[f"{sum(per[label].values()):.3f}" for label in models], end_section=True)
    return t


def main() -> None:
    p = common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median of the rounds' medians)")
    p.add_argument("--skip-layers", action="store_true", help="leave out the per-layer table (no trained model)")
    args = p.parse_args()
    set_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*quantiz.*deprecated.*")
    print_machine(machine_record(args.threads))
    console.print(pooling_table(args.rounds))
    console.print(conv_table(args.rounds))
    if not args.skip_layers:
        console.print(layer_table(args))


if __name__ == "__main__":
    main()
