"""int8 quantization: post-training static (eager mode, as the course does it) and dynamic.

``quantize-int8`` copies the float network, puts a ``QuantStub`` first and a ``DeQuantStub`` last,
fuses conv/linear (+ BatchNorm) + ReLU where PyTorch has a fused kernel, sets
``get_default_qconfig(backend)`` (optionally per-tensor weights or a min-max activation observer),
``prepare``s, runs a seeded calibration subset through it and ``convert``s. ``quantize-dynamic``
swaps Linear layers for int8-weight Linear layers whose activations are quantized per batch.

Both record a transform in the ModelSpec so a stored model is rebuilt without pickle: the float
layers are built, the same structural steps are replayed (stubs, fusion, qconfig, prepare, convert:
no calibration needed, the stored scales and zero points overwrite the observers' defaults) and the
stored state dict is loaded.

PyTorch's quantized engine (``torch.backends.quantized.engine``) is one process-wide setting, and
conv/linear weights are *packed for the current engine* whenever they are converted, loaded or
copied: a qnnpack model loaded or deep-copied while the engine is fbgemm silently gets fbgemm-packed
weights (and fbgemm's reduced-range assumption: different outputs). So the quantized network is a
:class:`QuantizedSequential` that switches to its own backend for ``forward``, ``load_state_dict``
and ``deepcopy`` and restores the previous engine afterwards.

``torch.ao.quantization`` is deprecated upstream in favour of torchao; every import of it stays in
this module so that a torchao / PT2E backend can be added beside it.
"""

from __future__ import annotations

import copy
import platform
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast, get_args

import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn.utils import parametrize

from compress.layer_spec import ACTIVATION_TYPES, ModelSpec
from compress.ops_count import count_ops
from compress.techniques import quantize_pt2e as pt2e
from compress.techniques.base import Context, Technique, TechniqueParams, Variant, register_technique
from compress.techniques.quantize_pt2e import Runtime as Pt2eRuntime
from compress.training import Cancelled

Backend = Literal["fbgemm", "qnnpack", "x86", "onednn"]
BACKENDS: tuple[str, ...] = get_args(Backend)

_X86_MACHINES = ("x86_64", "amd64", "x86", "i386", "i686")


def default_engine(machine: str | None = None, supported: Sequence[str] | None = None) -> Backend:
    """PyTorch's own default quantized engine for the CPU: ``x86`` on x86-64 (oneDNN convs on AVX-512 VNNI
    CPUs, FBGEMM elsewhere; on mnist-cnn at batch 64 it ran 4.7x fp32 where fbgemm ran 2.5-2.7x), ``qnnpack``
    on ARM. ``machine`` is ``platform.machine()``, ``supported`` this PyTorch's engines, unless given; when
    the preferred engine is missing, the next one this PyTorch has."""
    arch = (machine if machine is not None else platform.machine()).lower()
    have = list(torch.backends.quantized.supported_engines if supported is None else supported)
    if arch in _X86_MACHINES:
        order: tuple[Backend, ...] = ("x86", "fbgemm", "onednn", "qnnpack")
    elif arch.startswith(("arm", "aarch64")):
        order = ("qnnpack", "onednn", "x86", "fbgemm")
    else:
        order = ("qnnpack", "x86", "fbgemm", "onednn")
    return next((b for b in order if b in have), order[0])


DEFAULT_BACKEND: Backend = default_engine()
""":func:`default_engine` of this machine: what ``quantize-int8`` and ``quantize-dynamic`` use unless asked."""

# Layers PyTorch has no int8 kernel for: they run in fp32 between a dequantize and a quantize.
_FLOAT_ONLY: tuple[type[nn.Module], ...] = (nn.SiLU, nn.Softmax, nn.AdaptiveMaxPool2d, nn.BatchNorm1d)
_CALIBRATION_BATCH = 256

# What ``get_default_qconfig(backend)`` uses: (activations with reduce_range, per-channel weights).
# fbgemm (and x86, which runs Linear and, without AVX-512 VNNI, conv on fbgemm) keeps activations to
# 7 bits so that its u8*s8 pair sums cannot saturate int16; oneDNN and qnnpack use the full 8 bits.
_DEFAULT_QCONFIG: dict[str, tuple[bool, bool]] = {
    "fbgemm": (True, True),
    "x86": (True, True),
    "onednn": (False, True),
    "qnnpack": (False, False),
}


# -- the quantized engine -------------------------------------------------------------------------


def available_backends() -> list[str]:
    """The quantized engines (of :data:`BACKENDS`) this machine's PyTorch has."""
    return [b for b in BACKENDS if b in torch.backends.quantized.supported_engines]


def check_backend(backend: str) -> str:
    """``backend`` if this machine's PyTorch has that quantized engine; a ValueError listing those it has
    otherwise. The params models run it as a validator, so the API refuses such a job at POST time."""
    available = available_backends()
    if backend not in available:
        raise ValueError(
            f"quantized backend '{backend}' is not available on this machine; available: {', '.join(available)}"
        )
    return backend


def default_per_channel(backend: str) -> bool:
    """Whether ``backend``'s default qconfig quantizes weights per output channel (all but qnnpack)."""
    return _DEFAULT_QCONFIG[backend][1]


@contextmanager
def quantized_engine(backend: str) -> Iterator[None]:
    """Run the block with ``torch.backends.quantized.engine = backend``, then restore the previous one."""
    previous = torch.backends.quantized.engine
    if previous == backend:
        yield
        return
    torch.backends.quantized.engine = backend
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


class QuantizedSequential(nn.Sequential):
    """A Sequential of quantized layers, bound to the quantized engine that packed its weights.

    Same children (and state-dict keys) as a plain Sequential; ``forward``, ``load_state_dict`` and
    ``deepcopy`` run under ``backend``'s engine, whatever the process-wide setting is.
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], backend: str) -> None:
        super().__init__(layers)
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with quantized_engine(self.backend):
            return super().forward(x)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        with quantized_engine(self.backend):
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def __deepcopy__(self, memo: dict[int, Any]) -> QuantizedSequential:
        with quantized_engine(self.backend):
            new = type(self).__new__(type(self))
            memo[id(self)] = new
            new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def extra_repr(self) -> str:
        return f"backend={self.backend}"


@contextmanager
def _quiet_ao() -> Iterator[None]:
    """Silence torch.ao.quantization's own noise (its deprecation notice, observer range hints)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"Please use quant_min and quant_max")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
        warnings.filterwarnings("ignore", message=r"must run observer before calling calculate_qparams")
        yield


# -- shared structure steps ------------------------------------------------------------------------


def _is_quantized(model: nn.Module) -> bool:
    from torch.ao.nn.quantized import FloatFunctional  # float networks use it too (torchvision's skip adds)

    return any(
        isinstance(m, QuantizedSequential)
        or (type(m).__module__.startswith("torch.ao.nn.quantized") and not isinstance(m, FloatFunctional))
        for m in model.modules()
    )


def _float_copy(model: nn.Module, copy_model: bool) -> nn.Module:
    """An eval-mode float model to quantize: a deep copy (apply) and without parametrizations."""
    if _is_quantized(model):
        raise ValueError("the model is already quantized; quantize the float model instead")
    model = copy.deepcopy(model) if copy_model else model
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            parametrizations = cast(nn.ModuleDict, module.parametrizations)
            for name in list(parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model.eval()


def _self_contained(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The torchvision quantizable network (own stubs and ``fuse_model()``), when it is the only layer."""
    children = list(model.named_children())
    owners = [n for n, m in model.named_modules() if n and hasattr(m, "fuse_model")]
    if not owners:
        return None
    if len(children) != 1 or owners[0] != children[0][0]:
        raise ValueError(
            f"layer '{owners[0]}' is a torchvision quantizable network with its own quant stubs; "
            "int8 conversion supports it only as the model's single layer"
        )
    return children[0]


def _free_name(base: str, taken: set[str]) -> str:
    name, i = base, 1
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _bind(model: nn.Module, backend: str, stubs: bool) -> QuantizedSequential:
    """Wrap the model's layers (same names) in a QuantizedSequential, with stubs first and last."""
    from torch.ao.quantization import DeQuantStub, QuantStub

    layers = list(model.named_children()) if type(model) is nn.Sequential else [("model", model)]
    if not stubs:
        return QuantizedSequential(OrderedDict(layers), backend)
    taken = {n for n, _ in layers}
    quant, dequant = _free_name("quant", taken), _free_name("dequant", taken)
    return QuantizedSequential(OrderedDict([(quant, QuantStub()), *layers, (dequant, DeQuantStub())]), backend)


def _leaves(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Layers in execution order, looking inside plain (nested) Sequentials."""
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out.extend(_leaves(child, f"{path}."))
        else:
            out.append((path, child))
    return out


def _fusion_plan(model: nn.Module) -> tuple[list[list[str]], list[str]]:
    """Groups of consecutive layers PyTorch can fuse (conv→bn→relu, conv→bn, conv→relu, linear→relu,
    linear→bn1d, bn→relu), longest first; and the weighted-layer → activation pairs it cannot fuse."""
    from torch.ao.quantization.fuser_method_mappings import get_fuser_method

    def fusable(types: tuple[type[nn.Module], ...]) -> bool:
        try:
            return get_fuser_method(types) is not None
        except AssertionError:  # its way of saying "no fuser for these types"
            return False

    leaves = _leaves(model)
    fused: list[list[str]] = []
    not_fused: list[str] = []
    i = 0
    while i < len(leaves):
        for size in (3, 2):
            group = leaves[i : i + size]
            if len(group) == size and fusable(tuple(type(m) for _, m in group)):
                fused.append([n for n, _ in group])
                i += size
                break
        else:
            group = leaves[i : i + 1]
            i += 1
        last = group[-1][1]
        if i < len(leaves) and isinstance(leaves[i][1], ACTIVATION_TYPES):
            act_name, act = leaves[i]
            if isinstance(last, nn.Conv1d | nn.Conv2d | nn.Linear | nn.BatchNorm1d | nn.BatchNorm2d):
                not_fused.append("+".join([*(n for n, _ in group), act_name]) + f" ({type(act).__name__})")
    return fused, not_fused


class FloatIsland(nn.Module):
    """A layer PyTorch has no int8 kernel for: dequantize, run it in fp32, quantize again."""

    def __init__(self, layer: nn.Module) -> None:
        from torch.ao.quantization import DeQuantStub, QuantStub

        super().__init__()
        self.dequant = DeQuantStub()
        self.layer = layer
        self.quant = QuantStub()
        layer.qconfig = None  # type: ignore[assignment]  # stays fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quant(self.layer(self.dequant(x)))


def _qconfig(backend: str, per_channel: bool, observer: str) -> Any:
    """The course's ``get_default_qconfig(backend)``, with the weight / activation observer swapped
    when the options ask for something else than that backend's default."""
    from torch.ao.quantization import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
        get_default_qconfig,
    )

    qconfig = get_default_qconfig(backend)
    reduce_range = _DEFAULT_QCONFIG[backend][0]
    activation = HistogramObserver if observer == "histogram" else MinMaxObserver
    if per_channel:
        weight = PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    else:
        weight = MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    if observer != "histogram":
        qconfig = qconfig._replace(activation=activation.with_args(reduce_range=reduce_range))
    if per_channel != default_per_channel(backend):
        qconfig = qconfig._replace(weight=weight)
    return qconfig


def _prepare_int8(
    model: nn.Module, step: dict[str, Any], plan: list[list[str]] | None
) -> tuple[QuantizedSequential, dict[str, Any]]:
    """Stubs, fusion, float islands, qconfig and ``prepare`` (call under the backend's engine).

    ``plan`` is the recorded fusion groups when rebuilding, None to discover them. Returns the
    prepared network and what was done (``fused``, ``not_fused``, ``float_islands``, ``fuse_model``).
    """
    from torch.ao.quantization import fuse_modules, prepare

    done: dict[str, Any] = {"fused": [], "not_fused": [], "float_islands": []}
    tv = _self_contained(model)
    qmodel = _bind(model, step["backend"], stubs=tv is None)
    if tv is not None:
        name, net = tv
        n_groups = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        net.fuse_model()  # type: ignore[operator]
        done["fuse_model"] = name
        done["fused_summary"] = [f"{name}: torchvision fuse_model(), {n_groups} conv+bn(+relu) groups"]
    else:
        fused, not_fused = _fusion_plan(qmodel)
        if plan is not None:
            fused = [list(g) for g in plan]
        if fused:
            fuse_modules(qmodel, fused, inplace=True)
        done["fused"], done["not_fused"] = fused, not_fused
        for name, layer in _leaves(qmodel):
            if isinstance(layer, _FLOAT_ONLY):
                qmodel.set_submodule(name, FloatIsland(layer))
                done["float_islands"].append(f"{name} ({type(layer).__name__})")
    qmodel.qconfig = _qconfig(step["backend"], step["per_channel"], step["observer"])
    prepare(qmodel, inplace=True)
    return qmodel, done


# -- quantize-int8 ---------------------------------------------------------------------------------


class QuantizeInt8Params(TechniqueParams):
    """Post-training static int8 quantization (eager mode): weights and activations in int8."""

    backend: Backend = Field(
        default=DEFAULT_BACKEND,
        description="Quantized engine; default: PyTorch's own default for this CPU (x86 on x86-64, qnnpack on "
        "ARM). x86 (oneDNN convs on AVX-512 VNNI CPUs, FBGEMM Linear; the fastest for conv nets there); fbgemm "
        "(x86 servers, the older default); onednn (oneDNN for every layer, full 8-bit activations); qnnpack "
        "(ARM, mobile). An engine this machine's PyTorch lacks is refused.",
    )
    per_channel: bool | None = Field(
        default=None,
        description="One weight scale per output channel instead of per tensor; null = the backend's default "
        "(qnnpack: per tensor, the others: per channel).",
    )
    observer: Literal["minmax", "histogram"] = Field(
        default="histogram", description="How calibration sets activation ranges: min-max or histogram (MSE)."
    )
    calibration_samples: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Training samples (seeded subset) run through the model to calibrate; null = the job's "
        "setting (1,000).",
    )

    path: Literal["auto", "eager", "pt2e"] = Field(
        default="auto",
        description="How to quantize: 'eager' (stubs and module fusion; Sequential specs and torchvision's "
        "quantizable networks), 'pt2e' (torchao's prepare_pt2e/convert_pt2e on the exported graph with the "
        "X86InductorQuantizer: any traceable network, residual adds quantized); 'auto' = eager where it "
        "applies, PT2E otherwise. 'backend' is the eager path's engine.",
    )
    runtime: Pt2eRuntime = Field(
        default="inductor",
        description="PT2E only: how the int8 program runs and is timed. 'inductor' = torch.compile with Inductor "
        "freezing (oneDNN int8 kernels; compiled once per job, tens of seconds on a small CPU, noted in "
        "compile_seconds); 'exported' = the converted program as it is (reference kernels, no compile, slower).",
    )

    @field_validator("backend")
    @classmethod
    def _engine_available(cls, backend: str) -> str:
        return check_backend(backend)


def eager_applies(model: nn.Module) -> bool:
    """Whether eager-mode quantization can take ``model``: a Sequential of plain layers (nested plain
    Sequentials allowed), or one torchvision quantizable network with its own stubs."""
    try:
        if _self_contained(model) is not None:
            return True
    except ValueError:
        return False
    if not isinstance(model, nn.Sequential):
        return False
    return all(not any(n != "parametrizations" for n, _ in m.named_children()) for _, m in _leaves(model))


def _quantize_pt2e(model: nn.Module, spec: ModelSpec, params: QuantizeInt8Params, ctx: Context) -> Variant:
    """PT2E static int8 (X86InductorQuantizer): export, prepare, calibrate, convert, then warm up."""
    if params.per_channel is False:
        raise ValueError("the PT2E path (X86InductorQuantizer) quantizes weights per channel; drop per_channel=false")
    n = params.calibration_samples or ctx.calibration_samples
    calibration = ctx.data.calibration_subset(n, params.seed)
    float_model = _float_copy(model, copy_model=True)
    ops = count_ops(float_model, tuple(spec.input_shape))

    def on_batch(fraction: float) -> None:
        if ctx.cancelled():
            raise Cancelled("cancelled during calibration")
        ctx.report(0.1 + 0.7 * fraction, "calibrating")

    ctx.report(0.0, "exporting and preparing (PT2E)")
    program, qparams = pt2e.quantize_pt2e(
        float_model, tuple(spec.input_shape), calibration, params.observer, _CALIBRATION_BATCH, on_batch
    )
    qmodel = pt2e.Pt2eQuantized(program, params.runtime)
    ctx.report(0.85, "compiling" if params.runtime == "inductor" else "converted")
    warm = pt2e.warm_up(qmodel, tuple(spec.input_shape), (64, 1))
    step: dict[str, Any] = {"kind": "quantize-int8", "path": "pt2e", "quantizer": pt2e.QUANTIZER}
    step.update(runtime=params.runtime, observer=params.observer, input_shape=list(spec.input_shape))
    step["activation_qparams"] = qparams
    notes: dict[str, Any] = {"path": "pt2e", "quantizer": pt2e.QUANTIZER, "runtime": params.runtime}
    notes.update(weights="per channel", observer=params.observer, calibration_samples=len(calibration))
    notes.update(pt2e.quantized_ops(program), ops_counted_on="the float network (int8 runs the same convs)")
    notes["compile_seconds" if params.runtime == "inductor" else "first_call_seconds"] = warm
    new_spec = spec.model_copy(update={"transforms": [*spec.transforms, step]}, deep=True)
    ctx.report(1.0, "converted")
    suffix = f"pt2e {pt2e.QUANTIZER}, per-channel, {params.observer}, {params.runtime}"
    return Variant(qmodel, new_spec, size=pt2e.pt2e_size(program), notes=notes, label_suffix=suffix, ops=ops)


def quantize_int8(model: nn.Module, spec: ModelSpec, params: QuantizeInt8Params, ctx: Context) -> Variant:
    """Copy, stub, fuse, prepare, calibrate on a seeded subset, convert. ``model`` is not modified.

    Networks eager mode cannot take (``path='auto'``) or ``path='pt2e'`` go through PT2E."""
    from torch.ao.quantization import convert

    if params.path == "pt2e" or (params.path == "auto" and not eager_applies(model)):
        return _quantize_pt2e(model, spec, params, ctx)
    if not isinstance(model, nn.Sequential):
        raise ValueError("eager int8 quantization needs a Sequential layer spec; use path 'pt2e' or 'auto'")
    backend = check_backend(params.backend)
    per_channel = params.per_channel if params.per_channel is not None else default_per_channel(backend)
    step: dict[str, Any] = {"kind": "quantize-int8", "backend": backend, "per_channel": per_channel}
    step["observer"] = params.observer
    n = params.calibration_samples or ctx.calibration_samples
    calibration = ctx.data.calibration_subset(n, params.seed)
    ctx.report(0.0, "fusing and preparing")
    with _quiet_ao(), quantized_engine(backend):
        qmodel, done = _prepare_int8(_float_copy(model, copy_model=True), step, plan=None)
        with torch.no_grad():
            for start in range(0, len(calibration), _CALIBRATION_BATCH):
                if ctx.cancelled():
                    raise Cancelled("cancelled during calibration")
                qmodel(calibration[start : start + _CALIBRATION_BATCH])
                ctx.report(0.1 + 0.8 * (start + _CALIBRATION_BATCH) / len(calibration), "calibrating")
        convert(qmodel, inplace=True)
    step["fused"] = done["fused"]
    if "fuse_model" in done:
        step["fuse_model"] = done["fuse_model"]
    ctx.report(1.0, "converted")
    notes = {
        "path": "eager",
        "backend": backend,
        "weights": "per channel" if per_channel else "per tensor",
        "observer": params.observer,
        "calibration_samples": len(calibration),
        "fused": done.get("fused_summary") or ["+".join(g) for g in done["fused"]],
        "not_fused": done["not_fused"],
    }
    if done["float_islands"]:
        notes["float_islands"] = done["float_islands"]
    new_spec = spec.model_copy(update={"transforms": [*spec.transforms, step]}, deep=True)
    suffix = f"{backend}, {'per-channel' if per_channel else 'per-tensor'}, {params.observer}"
    return Variant(qmodel, new_spec, notes=notes, label_suffix=suffix)


def rebuild_int8(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    """Replay quantize-int8's structure on freshly built float layers; the weights and the activation
    scales come from the stored state dict that is loaded afterwards."""
    from torch.ao.quantization import convert

    if step.get("path") == "pt2e":
        return pt2e.rebuild_pt2e(model, step)
    backend = check_backend(step["backend"])
    with _quiet_ao(), quantized_engine(backend):
        qmodel, _ = _prepare_int8(_float_copy(model, copy_model=False), step, plan=step.get("fused", []))
        convert(qmodel, inplace=True)
    return qmodel


# -- quantize-dynamic ------------------------------------------------------------------------------


class QuantizeDynamicParams(TechniqueParams):
    """Dynamic int8 quantization: Linear weights stored in int8, activations quantized per batch."""

    backend: Backend = Field(
        default=DEFAULT_BACKEND,
        description="Quantized engine; default: PyTorch's own default for this CPU (x86 on x86-64, qnnpack on "
        "ARM). x86 (FBGEMM for Linear); fbgemm (x86 servers); onednn (oneDNN); qnnpack (ARM, mobile). An engine "
        "this machine's PyTorch lacks is refused.",
    )
    per_channel: bool = Field(default=False, description="One weight scale per output feature instead of per tensor.")

    @field_validator("backend")
    @classmethod
    def _engine_available(cls, backend: str) -> str:
        return check_backend(backend)


def _dynamic(model: nn.Module, backend: str, per_channel: bool) -> QuantizedSequential:
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    if not any(isinstance(m, nn.Linear) for m in model.modules()):
        raise ValueError("quantize-dynamic quantizes Linear layers, and the model has none")
    with _quiet_ao(), quantized_engine(backend):
        quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    return _bind(model, backend, stubs=False)


def quantize_dynamic_linear(model: nn.Module, spec: ModelSpec, params: QuantizeDynamicParams, ctx: Context) -> Variant:
    """int8 weights for every Linear layer; conv layers stay fp32. ``model`` is not modified."""
    backend = check_backend(params.backend)
    ctx.report(0.0, "quantizing Linear layers")
    qmodel = _dynamic(_float_copy(model, copy_model=True), backend, params.per_channel)
    layers = [n for n, m in qmodel.named_modules() if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")]
    step = {"kind": "quantize-dynamic", "backend": backend, "per_channel": params.per_channel}
    new_spec = spec.model_copy(update={"transforms": [*spec.transforms, step]}, deep=True)
    notes = {"backend": backend, "weights": "per channel" if params.per_channel else "per tensor", "quantized": layers}
    suffix = f"{backend}, {'per-channel' if params.per_channel else 'per-tensor'}"
    ctx.report(1.0, "converted")
    return Variant(qmodel, new_spec, notes=notes, label_suffix=suffix)


def rebuild_dynamic(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    """Replay quantize-dynamic on freshly built float layers; the int8 weights come from the stored
    state dict that is loaded afterwards."""
    return _dynamic(_float_copy(model, copy_model=False), check_backend(step["backend"]), step["per_channel"])


register_technique(
    Technique(
        name="quantize-int8",
        description="Post-training static int8 quantization (eager mode): stubs, conv/linear+BN+ReLU fusion, "
        "seeded calibration, convert. Weights 1 byte + scale and zero point per channel or tensor.",
        params_model=QuantizeInt8Params,
        apply=quantize_int8,
        rebuild=rebuild_int8,
    )
)
register_technique(
    Technique(
        name="quantize-dynamic",
        description="Dynamic int8 quantization of Linear layers: int8 weights, activations quantized per batch.",
        params_model=QuantizeDynamicParams,
        apply=quantize_dynamic_linear,
        rebuild=rebuild_dynamic,
    )
)
