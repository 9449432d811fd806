"""Static int8 for any traceable network through PT2E (torchao's ``prepare_pt2e`` / ``convert_pt2e``).

Eager-mode quantization needs stubs and a fusion list written for the network; it cannot quantize a
residual add it does not see. PT2E works on the exported graph instead: ``torch.export`` (strict, so
that every call of a shared module is its own partition), the X86InductorQuantizer annotates
conv/linear (+BatchNorm folded) (+ReLU) and residual adds, calibration runs the observers, and
``convert_pt2e`` leaves int8 weights and quantize/dequantize pairs around every quantized op. The
x86 path is meant to run after ``torch.compile`` with Inductor's freezing, which turns those pairs
into oneDNN int8 convolutions and quantized adds (``runtime="inductor"``); ``runtime="exported"``
runs the converted program as it is (reference kernels: dequantize, fp32 op, quantize; no compile).

Reload without pickle: the step records the input shape, the observer and every activation
quantize/dequantize node's scale and zero point (they are literals in the graph, not tensors). A
stored model is rebuilt by exporting the fresh float layers, preparing with the same quantizer,
running one seeded batch (so that the weight observers have seen something), converting, writing
the recorded activation parameters back into the graph and loading the stored int8 weights, scales
and zero points over the placeholders.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, get_args

import torch
from torch import nn

from compress.size import SizeReport

Runtime = Literal["inductor", "exported"]
Observer = Literal["minmax", "histogram"]
RUNTIMES: tuple[str, ...] = get_args(Runtime)
OBSERVERS: tuple[str, ...] = get_args(Observer)
QUANTIZER = "x86-inductor"
_MAX_BATCH = 65536


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _quantizer(observer: Observer) -> Any:
    """The X86InductorQuantizer with its default config (uint8 activations, per-channel int8 weights);
    activations observed by min-max instead of the default histogram when asked."""
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    config = xiq.get_default_x86_inductor_quantization_config()
    if observer == "minmax":
        act = dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12)
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(config)
    return quantizer


def _prepared(model: nn.Module, input_shape: tuple[int, ...], observer: Observer) -> torch.fx.GraphModule:
    """Export ``model`` (eval, dynamic batch) and insert the quantizer's observers."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    with _quiet():
        program = torch.export.export(model.eval(), (example,), strict=True, dynamic_shapes=({0: batch},))
        return prepare_pt2e(program.module(), _quantizer(observer))


def _convert(prepared: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``convert_pt2e`` (int8 weights folded into constants), then drop the float weights the graph no
    longer reads, so that the state holds what runs."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    with _quiet():
        program = convert_pt2e(prepared)
    used = {str(n.target) for n in program.graph.nodes if n.op == "get_attr"}
    for name, _ in [*program.named_parameters(), *program.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(program.get_submodule(owner), attr)
    return program


def _per_tensor_nodes(program: torch.fx.GraphModule) -> list[torch.fx.Node]:
    """The quantize/dequantize nodes of activations: their scale and zero point are graph literals."""
    ops = torch.ops.quantized_decomposed
    targets = {ops.quantize_per_tensor.default, ops.dequantize_per_tensor.default}
    return [n for n in program.graph.nodes if n.op == "call_function" and n.target in targets]


def activation_qparams(program: torch.fx.GraphModule) -> dict[str, list[float | int]]:
    """``{node name: [scale, zero point]}`` of every activation quantize/dequantize node."""
    return {n.name: [float(n.args[1]), int(n.args[2])] for n in _per_tensor_nodes(program)}  # type: ignore[arg-type]


def _set_activation_qparams(program: torch.fx.GraphModule, qparams: dict[str, list[float | int]]) -> None:
    nodes = {n.name: n for n in _per_tensor_nodes(program)}
    if set(nodes) != set(qparams):
        raise ValueError(
            "the rebuilt PT2E graph does not match the stored one (different quantize/dequantize nodes); "
            "was the model stored by another PyTorch/torchao version?"
        )
    for name, (scale, zero_point) in qparams.items():
        node = nodes[name]
        node.args = (node.args[0], float(scale), int(zero_point), *node.args[3:])
    program.recompile()


class Pt2eQuantized(nn.Module):
    """A PT2E-converted int8 program and how it is meant to run.

    ``runtime="inductor"``: ``torch.compile`` with Inductor freezing (compiled on the first call, a
    dynamic batch dimension; batch 1 is compiled separately). ``"exported"``: the converted program
    itself. The compiled function is not part of the state and not copied.
    """

    def __init__(self, program: torch.fx.GraphModule, runtime: Runtime) -> None:
        super().__init__()
        self.program = program
        self.runtime = runtime
        self._compiled: list[Callable[..., torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runtime == "exported":
            return self.program(x)
        import torch._inductor.config as inductor_config

        if not self._compiled:
            self._compiled.append(torch.compile(self.program, dynamic=True))
        with _quiet(), inductor_config.patch(freezing=True):
            return self._compiled[0](x)

    def train(self, mode: bool = True) -> Pt2eQuantized:
        """Only the flag: an exported program has no train mode (its BatchNorms are folded), and
        torchao refuses ``train()``/``eval()`` on it."""
        self.training = mode
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Pt2eQuantized:
        new = type(self)(copy.deepcopy(self.program, memo), self.runtime)
        memo[id(self)] = new
        return new

    def extra_repr(self) -> str:
        return f"quantizer={QUANTIZER}, runtime={self.runtime}"


def quantize_pt2e(
    model: nn.Module,
    input_shape: tuple[int, ...],
    calibration: torch.Tensor,
    observer: Observer,
    batch_size: int = 256,
    on_batch: Callable[[float], None] | None = None,
) -> tuple[torch.fx.GraphModule, dict[str, list[float | int]]]:
    """Export, prepare, calibrate on ``calibration`` and convert the float eval-mode ``model``.

    Returns the converted program and its activation scales / zero points (for the stored step).
    ``on_batch(fraction done)`` is called after each calibration batch; it may raise to stop.
    """
    prepared = _prepared(model, input_shape, observer)
    with torch.no_grad():
        for start in range(0, len(calibration), batch_size):
            prepared(calibration[start : start + batch_size])
            if on_batch is not None:
                on_batch(min(1.0, (start + batch_size) / len(calibration)))
    program = _convert(prepared)
    return program, activation_qparams(program)


def rebuild_pt2e(model: nn.Module, step: dict[str, Any]) -> Pt2eQuantized:
    """The converted structure of a stored PT2E step on fresh float layers; the int8 weights, scales
    and zero points come from the state dict loaded afterwards, the activations' from the step."""
    shape = tuple(int(v) for v in step["input_shape"])
    if step.get("runtime") not in RUNTIMES or step.get("observer") not in OBSERVERS:
        raise ValueError(
            f"a PT2E step needs runtime in {list(RUNTIMES)} and observer in {list(OBSERVERS)}; "
            f"got {step.get('runtime')!r}, {step.get('observer')!r}"
        )
    prepared = _prepared(model, shape, step["observer"])
    with torch.no_grad():
        prepared(torch.randn(2, *shape, generator=torch.Generator().manual_seed(0)))
    program = _convert(prepared)
    _set_activation_qparams(program, step["activation_qparams"])
    return Pt2eQuantized(program, step["runtime"])


def pt2e_size(program: torch.fx.GraphModule) -> SizeReport:
    """Stored weights of the converted program: int8 tensors at 1 byte, fp32 ones (biases, layers
    left in float) at 4; each per-channel scale + zero point counted as 8 bytes (fp32 + int32), the
    convention of the eager path. Activation scales are graph literals and not counted."""
    n = nbytes = nonzero = 0
    for name, t in program.state_dict().items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf.startswith("_zero_point_"):
            continue
        if leaf.startswith("_scale_"):
            nbytes += t.numel() * 8
            continue
        n += t.numel()
        nbytes += t.numel() * t.element_size()
        nonzero += int(torch.count_nonzero(t))
    return SizeReport(n, nbytes, nonzero, "PT2E: int8 weights 1 B + fp32 scale and int32 zero point per channel")


def quantized_ops(program: torch.fx.GraphModule) -> dict[str, int]:
    """How many convolutions/linears get int8 weights, and how many residual adds are quantized: a
    dequantized input and a quantized output (the x86 quantizer fuses conv + add (+ ReLU), so the
    conv's output feeds the add without a quantize/dequantize pair in between)."""
    ops = torch.ops.quantized_decomposed
    dq = {ops.dequantize_per_tensor.default, ops.dequantize_per_channel.default}
    weighted = {torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default, torch.ops.aten.linear.default}
    adds = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}
    counts = {"int8_weighted_layers": 0, "quantized_adds": 0, "float_weighted_layers": 0}
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        inputs_dq = [isinstance(a, torch.fx.Node) and a.target in dq for a in node.args[:2]]
        if node.target in weighted:
            key = "int8_weighted_layers" if all(inputs_dq) else "float_weighted_layers"
            counts[key] += 1
        elif node.target in adds and any(inputs_dq) and _output_quantized(node):
            counts["quantized_adds"] += 1
    return counts


def _output_quantized(node: torch.fx.Node) -> bool:
    """Whether ``node``'s output (through a following ReLU, as in conv+add+relu) is quantized."""
    users = list(node.users)
    if len(users) == 1 and users[0].target in (torch.ops.aten.relu.default, torch.ops.aten.relu_.default):
        users = list(users[0].users)
    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    return bool(users) and all(u.target == quantize for u in users)


def warm_up(model: Pt2eQuantized, input_shape: tuple[int, ...], batch_sizes: tuple[int, ...]) -> dict[str, float]:
    """Run one batch of each size and time it: with ``runtime="inductor"`` that is the compile cost,
    in seconds per batch size (later calls of the same shape reuse the compiled code)."""
    out: dict[str, float] = {}
    with torch.inference_mode():
        for bs in batch_sizes:
            t0 = time.perf_counter()
            model(torch.zeros(bs, *input_shape))
            out[f"bs{bs}"] = round(time.perf_counter() - t0, 2)
    return out
