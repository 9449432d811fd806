"""Every variant as an ONNX model that onnxruntime (CPU execution provider) loads and runs.

Routes, named in the returned ``info["route"]``:

- ``fp32``: the float network (baselines, orthogonal, separable, narrow, prune-l1, prune-channels)
  exported as it is, after baking what only PyTorch understands: parametrizations
  (``remove_parametrizations(leave_parametrized=True)``), pruning masks (``prune.remove``: sparse
  weights export dense, as exact zeros) and :mod:`compress.pooling`'s strided-view pooling (replaced
  by PyTorch's own ``MaxPool2d`` / ``AvgPool2d``, which export as one ``MaxPool`` / ``AveragePool``).
- ``ort-dynamic``: quantize-dynamic. The int8 Linear weights are dequantized into a float twin (the
  same values, on the int8 grid), exported, then quantized by onnxruntime's ``quantize_dynamic``
  (int8 weights, activations quantized per batch, per channel if the variant was).
- ``ort-static-qdq``: quantize-int8. PyTorch's exporters handle eager-mode quantized modules poorly,
  so the float twin (int8 weights dequantized, BatchNorm folded as PyTorch fused it) is exported and
  quantized by onnxruntime's ``quantize_static`` in QDQ format, calibrated on the same samples the
  eager variant was (``calibration``), per channel if the variant was.

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` by default; the dynamo
exporter (``exporter="dynamo"``: torch.export + onnxscript) is kept beside it. Both give models that
onnxruntime loads and runs for every variant here, since every route exports a plain float twin. The
TorchScript one is the default because, measured here with torch 2.14.1 on mnist-cnn (2 busy cores),
it exports in 0.6 s where the dynamo one takes 6-15 s (it writes opset 18 and converts down to 17
through onnx's C API), which would turn the test suite's ~30 exports into minutes; the graphs are the
same operators (Conv, Relu, MaxPool, Gemm; Flatten vs Reshape). PyTorch marks the TorchScript exporter
deprecated (a DeprecationWarning since 2.9): when it goes, ``exporter="dynamo"`` is the route.

The output is made reproducible: doc strings are cleared, initializers sorted by name (their order
follows parameter registration, which baking a pruning mask changes), the route is written as
metadata, and the protobuf is serialized deterministically, so the same model gives the same bytes,
before and after a storage round trip.

int8 and onnxruntime: activations are uint8 (asymmetric, MinMax calibration), weights int8
symmetric with 7 bits (``reduce_range``), per channel when the eager variant was. The 7-bit weights are
for the CPUs the model will run on, not the one that exported it: without int8 dot-product instructions
(VNNI), onnxruntime's u8s8 kernels add pairs of 8-bit products in 16 bits (``vpmaddubsw``), which saturate
with full-range weights; on such a CPU (AVX2) full-range weights cost 0.6-0.8 points against eager int8 and
agreed on only 98.6 % of the samples, 7-bit weights match it. PyTorch's fbgemm / x86 keep activations to
7 bits instead, so the two int8 models are close but not bit-identical.
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from compress import pooling
from compress.layer_spec import ModelSpec, build_float

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_CALIBRATION_BATCH = 256


class ExportError(ValueError):
    """A variant that cannot be exported to ONNX; the message says why and what would be accepted."""


@dataclass
class OnnxExport:
    """The ONNX model's bytes and how they were made (``route``, ``opset``, ``exporter``, ...)."""

    data: bytes
    info: dict[str, Any] = field(default_factory=dict)


# -- the float twin ---------------------------------------------------------------------------------


STRUCTURAL = ("prune-channels", "separable")
"""Transforms that only change float shapes (pruned channels, separated convs of a whole network)."""


def _float_structure(spec: ModelSpec) -> nn.Module:
    """``spec``'s float network with its structural transforms replayed (no quantization)."""
    from compress.techniques import TECHNIQUES

    model = build_float(spec)
    for step in spec.transforms:
        rebuild = TECHNIQUES.get(step["kind"]).rebuild if step.get("kind") in STRUCTURAL else None
        if rebuild is not None:
            model = rebuild(model, step)
    return model


def _plain_pooling(module: nn.Module) -> nn.Module:
    """PyTorch's own pooling layer for one of :mod:`compress.pooling`'s (same arguments)."""
    if type(module) is pooling.MaxPool2d:
        m = cast(pooling.MaxPool2d, module)
        return nn.MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)
    if type(module) is pooling.AvgPool2d:
        a = cast(pooling.AvgPool2d, module)
        return nn.AvgPool2d(a.kernel_size, a.stride, a.padding, a.ceil_mode, a.count_include_pad, a.divisor_override)
    return module


def _bake(model: nn.Module) -> nn.Module:
    """In place: parametrizations and pruning masks made permanent, netreduce pooling made PyTorch's."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            parametrizations = cast(nn.ModuleDict, module.parametrizations)
            for name in list(parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        for name in ("weight", "bias"):
            if hasattr(module, f"{name}_mask") and hasattr(module, f"{name}_orig"):
                prune.remove(module, name)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            plain = _plain_pooling(child)
            if plain is not child:
                setattr(parent, name, plain)
    return model.eval()


def _is_quantized_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized") or type(module).__module__.startswith(
        "torch.ao.nn.intrinsic.quantized"
    )


def _leaves(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        if type(child) is nn.Sequential:
            yield from _leaves(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def _dequantized_twin(qmodel: nn.Module, spec: ModelSpec) -> nn.Module:
    """The float network of a quantized variant: ``spec.layers`` built afresh, each layer given the
    quantized layer's weights dequantized (int8 values times their scales). A BatchNorm that PyTorch
    folded into the convolution before it (an ``Identity`` in the quantized model) becomes an Identity
    here too; a fused ReLU stays a ReLU."""
    from compress.techniques.quantize import FloatIsland

    twin = _float_structure(spec)
    with torch.no_grad():
        for name, layer in list(_leaves(twin)):
            try:
                q = qmodel.get_submodule(name)
            except AttributeError as exc:
                raise ExportError(
                    f"layer '{name}' is not in the quantized model; cannot rebuild its float twin"
                ) from exc
            if isinstance(q, FloatIsland):
                layer.load_state_dict(q.layer.state_dict())
            elif _is_quantized_module(q) and callable(getattr(q, "weight", None)):
                if not isinstance(layer, nn.Conv2d | nn.Conv1d | nn.Linear):
                    raise ExportError(
                        f"layer '{name}': quantized {type(q).__name__} where the spec has {type(layer).__name__}"
                    )
                w = cast(Any, q).weight()
                w = w.dequantize() if w.is_quantized else w
                b = cast(Any, q).bias() if callable(getattr(q, "bias", None)) else None
                if w.shape != layer.weight.shape:
                    raise ExportError(
                        f"layer '{name}': quantized weight shape {tuple(w.shape)} != {tuple(layer.weight.shape)}"
                    )
                layer.weight = nn.Parameter(w.float().clone())
                layer.bias = None if b is None else nn.Parameter(b.detach().float().clone())  # type: ignore[assignment]
            elif _is_quantized_module(q) and isinstance(layer, nn.BatchNorm2d | nn.BatchNorm1d):
                state = {k: v for k, v in q.state_dict().items() if k not in ("scale", "zero_point")}
                layer.load_state_dict(state, strict=False)
            elif isinstance(q, nn.Identity) and isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
                twin.set_submodule(name, nn.Identity())
            elif isinstance(q, nn.Identity) or type(q) is type(layer) or isinstance(layer, type(q)):
                if any(True for _ in q.parameters()) or any(True for _ in q.buffers()):
                    layer.load_state_dict(q.state_dict())
            elif _is_quantized_module(q) and not any(True for _ in layer.parameters()):
                pass  # quantized ReLU / pooling / dropout: no weights, the float layer computes the same
            else:
                raise ExportError(
                    f"layer '{name}': cannot export a {type(q).__name__} (in place of {type(layer).__name__}); "
                    "exportable quantized layers: Conv/Linear (+ fused BatchNorm/ReLU), float islands, BatchNorm"
                )
    return _bake(twin)


def float_twin(model: nn.Module, spec: ModelSpec) -> nn.Module:
    """A plain fp32 model computing what ``model`` does, for the ONNX exporter: ``spec.layers`` built
    afresh and given the model's current weights (a parametrization's value, a pruned weight times its
    mask), PyTorch's pooling, and for a quantized variant its int8 weights dequantized. ``model`` is
    neither modified nor deep-copied (a model with pruning masks attached cannot be)."""
    kinds = [step.get("kind", "") for step in spec.transforms]
    if any(k in ("quantize-int8", "quantize-dynamic") for k in kinds):
        return _dequantized_twin(model, spec)
    twin = _float_structure(spec)
    state: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key in twin.state_dict():
            owner, _, attr = key.rpartition(".")
            try:
                source = model.get_submodule(owner)
            except AttributeError as exc:
                raise ExportError(f"the model has no layer '{owner}' that its spec describes") from exc
            if hasattr(source, f"{attr}_orig") and hasattr(source, f"{attr}_mask"):  # a pruning mask in force
                value = getattr(source, f"{attr}_orig") * getattr(source, f"{attr}_mask")
            else:
                value = getattr(source, attr)  # a parametrization computes its current value here
            state[key] = value.detach().clone()
    try:
        twin.load_state_dict(state)
    except RuntimeError as exc:
        raise ExportError(f"the model does not match its spec: {str(exc).splitlines()[0]}") from exc
    return _bake(twin)


# -- exporting --------------------------------------------------------------------------------------


def _canonical(data: bytes, info: dict[str, Any]) -> bytes:
    """The ONNX bytes made reproducible: no doc strings, the route as metadata, deterministic protobuf."""
    import onnx

    proto = onnx.load_from_string(data)
    proto.doc_string = ""
    proto.graph.doc_string = ""
    for node in proto.graph.node:
        node.doc_string = ""
    # initializer order follows parameter registration, which prune.remove / parametrizations change
    initializers = sorted((copy.deepcopy(t) for t in proto.graph.initializer), key=lambda t: t.name)
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(initializers)
    del proto.metadata_props[:]
    for key in sorted(info):
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"netreduce.{key}", str(info[key])
    onnx.checker.check_model(proto)
    return proto.SerializeToString(deterministic=True)


EXPORTERS = {"torchscript": "torch.onnx.export (TorchScript)", "dynamo": "torch.onnx.export (dynamo)"}


def _torch_export(model: nn.Module, input_shape: tuple[int, ...], opset: int, exporter: str = "torchscript") -> bytes:
    """``torch.onnx.export`` with the batch dimension dynamic (named ``batch``)."""
    buf = io.BytesIO()
    x = torch.zeros(2, *input_shape)
    if exporter == "dynamo":
        from torch.export import Dim

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                (x,),
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: Dim("batch")},),
                dynamo=True,
                verbose=False,
            )
        assert program is not None
        return cast(Any, program).model_proto.SerializeToString()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            cast(Any, buf),  # a file-like object is accepted (the stubs say path only)
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )
    return buf.getvalue()


class _Batches:
    """onnxruntime's CalibrationDataReader over a tensor of samples, in fixed batches."""

    def __init__(self, samples: torch.Tensor) -> None:
        self.batches = [
            {INPUT_NAME: samples[i : i + _CALIBRATION_BATCH].numpy().astype(np.float32)}
            for i in range(0, len(samples), _CALIBRATION_BATCH)
        ]
        self.i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return self.batches[self.i - 1]

    def rewind(self) -> None:
        self.i = 0


class _PreProcessingHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _ort_quantize(float_onnx: bytes, step: dict[str, Any], calibration: torch.Tensor | None) -> bytes:
    root = logging.getLogger()
    hint = _PreProcessingHint()  # onnxruntime's quantizer logs this hint to the root logger on every call
    root.addFilter(hint)
    try:
        return _ort_quantize_files(float_onnx, step, calibration)
    finally:
        root.removeFilter(hint)


def _ort_quantize_files(float_onnx: bytes, step: dict[str, Any], calibration: torch.Tensor | None) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory(prefix="netreduce-onnx-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(float_onnx)
        if step["kind"] == "quantize-dynamic":
            quantize_dynamic(
                src,
                dst,
                per_channel=bool(step.get("per_channel")),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
        else:
            assert calibration is not None
            reader = _Batches(calibration)
            quantize_static(
                src,
                dst,
                reader,  # type: ignore[arg-type]
                quant_format=QuantFormat.QDQ,
                per_channel=bool(step.get("per_channel")),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                reduce_range=True,  # 7-bit weights: no saturation on CPUs without VNNI (module docstring)
                calibrate_method=CalibrationMethod.MinMax,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        return dst.read_bytes()


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    calibration: torch.Tensor | None = None,
    opset: int = OPSET,
    exporter: str = "torchscript",
) -> OnnxExport:
    """Export a variant to ONNX (batch dimension dynamic) with the route its ``spec.transforms`` call
    for (see the module docstring). ``calibration``: the samples the eager int8 variant was calibrated
    on (``DatasetSplit.calibration_subset(n, seed)``); required for quantize-int8 only.

    Raises ExportError when the variant cannot be exported, saying why."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}'; known: {', '.join(EXPORTERS)}")
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; netreduce exports opset 17 or later")
    steps = [step for step in spec.transforms if step.get("kind") not in STRUCTURAL]
    kinds = [step.get("kind", "") for step in steps]
    unknown = [k for k in kinds if k not in ("quantize-int8", "quantize-dynamic")]
    if unknown:
        raise ExportError(
            f"transform(s) {unknown} have no ONNX export; exportable: quantize-int8, quantize-dynamic, "
            + ", ".join(STRUCTURAL)
        )
    if len(kinds) > 1:
        raise ExportError(f"more than one quantization step {kinds}: export supports one")
    step = steps[0] if steps else None
    if step is not None and step.get("path") == "pt2e":
        raise ExportError(
            "ONNX export of a PT2E int8 program (quantize-int8 path 'pt2e') is not supported; "
            "int8 variants quantized in eager mode (layer-spec networks) are"
        )
    if step is not None and step.get("fuse_model"):
        raise ExportError(
            f"int8 export of the torchvision quantizable network '{step['fuse_model']}' is not supported; "
            "int8 variants of layer-spec networks (conv/linear/BatchNorm/ReLU/pooling) are"
        )
    if step is not None and step["kind"] == "quantize-int8" and (calibration is None or len(calibration) == 0):
        raise ExportError(
            "quantize-int8 exports through onnxruntime's static quantizer, which needs calibration samples"
        )

    twin = float_twin(model, spec)
    shape = tuple(spec.input_shape)
    try:
        data = _torch_export(twin, shape, opset, exporter)
    except Exception as exc:  # noqa: BLE001  (the exporter's many failure types become one user error)
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    info: dict[str, Any] = {"route": "fp32", "opset": opset, "exporter": EXPORTERS[exporter]}
    if step is not None:
        info["route"] = "ort-dynamic" if step["kind"] == "quantize-dynamic" else "ort-static-qdq"
        info["per_channel"] = bool(step.get("per_channel"))
        if step["kind"] == "quantize-int8":
            info["calibration_samples"] = len(cast(torch.Tensor, calibration))
            info["calibrate_method"] = "MinMax"
            info["quant_format"] = "QDQ, uint8 activations (asymmetric), int8 weights (symmetric, 7 bits)"
        data = _ort_quantize(data, step, calibration)
    return OnnxExport(_canonical(data, info), info)


# -- running and timing -----------------------------------------------------------------------------


def ort_session(onnx_bytes: bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session with fixed options: ``threads`` intra-op threads (default: torch's
    thread count, as the eager figures use), one inter-op thread, sequential execution, all graph
    optimizations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # no busy-waiting worker threads between runs: a spinning onnxruntime pool steals the CPU from whatever is
    # timed next (eager PyTorch in the same retime round ran 2x slower beside idle, spinning sessions)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def ort_predict(session: Any, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Logits of ``x`` from an onnxruntime session, in batches."""
    out = [
        session.run([OUTPUT_NAME], {INPUT_NAME: x[i : i + batch_size].numpy().astype(np.float32)})[0]
        for i in range(0, len(x), batch_size)
    ]
    return torch.from_numpy(np.concatenate(out))


def time_ort(session: Any, input_shape: tuple[int, ...], batch_size: int, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of one ``session.run`` over ``batch_size`` samples (the input is the
    seeded random batch ``measure_latency`` uses)."""
    import statistics
    import time

    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).numpy()
    feed = {INPUT_NAME: x}
    for _ in range(warmup):
        session.run([OUTPUT_NAME], feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run([OUTPUT_NAME], feed)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def measure_ort_latency(
    onnx_bytes: bytes,
    input_shape: tuple[int, ...],
    batch_sizes: tuple[int, ...] = (1, 64),
    threads: int | None = None,
    runs: int = 20,
    warmup: int = 3,
) -> dict[str, float]:
    """onnxruntime (CPU provider) latency, mirroring ``compress.measure.measure_latency``: median ms
    of ``runs`` timed passes after ``warmup``, per batch size, keyed ``ort_latency_ms_bs{n}``; threads
    default to torch's thread count (the eager figures' threads)."""
    session = ort_session(onnx_bytes, threads)
    return {f"ort_latency_ms_bs{bs}": time_ort(session, input_shape, bs, runs, warmup) for bs in batch_sizes}
