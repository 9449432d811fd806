"""quantize-int8 (static, eager) and quantize-dynamic: modules, size, accuracy, engines, storage, chains."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.ao.nn import intrinsic, quantized

from compress.baseline import Baseline, resolve_spec
from compress.datasets import DatasetSplit
from compress.layer_spec import ModelSpec, build_model
from compress.ops_count import count_ops
from compress.persistence import model_from_bytes, model_to_bytes
from compress.runner import JobInputError, Runner, Step, validate_steps
from compress.size import dense_size
from compress.techniques.base import TECHNIQUES, Context, Variant, get_technique
from compress.techniques.quantize import (
    BACKENDS,
    DEFAULT_BACKEND,
    QuantizedSequential,
    QuantizeDynamicParams,
    QuantizeInt8Params,
    _qconfig,
    available_backends,
    check_backend,
    default_engine,
    default_per_channel,
    quantized_engine,
)

# digits-cnn on 1x8x8: (weight elements, output channels / features) of each weighted layer.
DIGITS_LAYERS = {"conv1": (144, 16), "conv2": (4608, 32), "fc1": (32768, 64), "fc2": (640, 10)}


@pytest.fixture(autouse=True)
def _restore_engine() -> Iterator[None]:
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


def _ctx(data: DatasetSplit, model: nn.Module, spec: ModelSpec, accuracy: float | None = None, n: int = 1000):
    return Context(data, model, spec, accuracy, calibration_samples=n)


def _apply(technique: str, base: Baseline, data: DatasetSplit, **params: Any) -> Variant:
    tech = get_technique(technique)
    out = tech.apply(base.model, base.spec, tech.params_model(**params), _ctx(data, base.model, base.spec))
    assert isinstance(out, Variant)
    return out


def _synthetic(shape: tuple[int, int, int], n: int = 64) -> DatasetSplit:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DatasetSplit("synthetic", x, y, x[:16], y[:16], 10, (0.0,), (1.0,))


def _untrained(arch: str | list[dict[str, Any]], shape: tuple[int, int, int] | None = None):
    spec = resolve_spec(arch, shape, 10)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    data = _synthetic(spec.input_shape)
    return model, spec, data


def _expected_int8_bytes(per_channel: bool) -> int:
    """1 byte per weight + (fp32 scale + int32 zero point) per channel or tensor + fp32 biases."""
    total = 0
    for weights, outputs in DIGITS_LAYERS.values():
        total += weights + 8 * (outputs if per_channel else 1) + 4 * outputs
    return total


@pytest.fixture(scope="module")
def int8(digits: DatasetSplit, digits_baseline: Baseline) -> Variant:
    return _apply("quantize-int8", digits_baseline, digits, backend="fbgemm")


def test_converted_layers_are_quantized_modules(int8: Variant, digits_baseline: Baseline) -> None:
    m = int8.model
    assert isinstance(m, QuantizedSequential) and m.backend == "fbgemm"
    assert list(dict(m.named_children()))[0] == "quant" and list(dict(m.named_children()))[-1] == "dequant"
    assert isinstance(m.quant, quantized.Quantize) and isinstance(m.dequant, quantized.DeQuantize)
    for name in ("conv1", "conv2"):
        assert type(m.get_submodule(name)) is intrinsic.quantized.ConvReLU2d
    assert type(m.fc1) is intrinsic.quantized.LinearReLU
    assert type(m.fc2) is quantized.Linear
    assert all(isinstance(m.get_submodule(n), nn.Identity) for n in ("relu1", "relu2", "relu3"))
    assert m.conv2.weight().qscheme() == torch.per_channel_affine  # symmetric: every zero point is 0
    assert m.conv2.weight().q_per_channel_scales().shape == (32,)
    assert not m.conv2.weight().q_per_channel_zero_points().any()
    assert m.conv2.weight().dtype == torch.qint8
    # the base model is untouched
    assert type(digits_baseline.model.conv1) is nn.Conv2d and type(digits_baseline.model.relu1) is nn.ReLU
    assert int8.spec.layers == digits_baseline.spec.layers
    assert int8.spec.transforms == [
        {
            "kind": "quantize-int8",
            "backend": "fbgemm",
            "per_channel": True,
            "observer": "histogram",
            "fused": [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]],
        }
    ]
    assert int8.notes["fused"] == ["conv1+relu1", "conv2+relu2", "fc1+relu3"]
    assert int8.notes["not_fused"] == [] and int8.notes["calibration_samples"] == 1000


@pytest.mark.parametrize("per_channel", [True, False])
def test_bytes_are_a_quarter_of_fp32_plus_qparams(
    digits: DatasetSplit, digits_baseline: Baseline, per_channel: bool
) -> None:
    v = _apply("quantize-int8", digits_baseline, digits, per_channel=per_channel, observer="minmax")
    size, fp32 = dense_size(v.model), dense_size(digits_baseline.model)
    assert fp32.bytes == 4 * sum(w + o for w, o in DIGITS_LAYERS.values()) == 153_128
    assert size.bytes == _expected_int8_bytes(per_channel)  # 39,624 per channel, 38,680 per tensor
    assert size.n_params == fp32.n_params
    assert 0.25 < size.bytes / fp32.bytes < 0.26
    assert "int8" in size.convention
    # same operations as the float model: fused ReLUs are still counted as activation ops
    ops, ops_fp32 = count_ops(v.model, (1, 8, 8)), count_ops(digits_baseline.model, (1, 8, 8))
    assert (ops.macs, ops.activation_ops) == (ops_fp32.macs, ops_fp32.activation_ops) == (337_536, 3_136)


@pytest.mark.parametrize("backend", ["fbgemm", "qnnpack", "x86", "onednn"])
def test_every_backend_runs_and_stays_within_one_point(
    digits: DatasetSplit, digits_baseline: Baseline, backend: str
) -> None:
    base_acc = digits_baseline.measurement.accuracy
    assert base_acc is not None
    ctx = _ctx(digits, digits_baseline.model, digits_baseline.spec, base_acc)
    engine = torch.backends.quantized.engine
    [result] = Runner(ctx, latency_runs=2).run(
        [Step(technique="quantize-int8", params={"backend": backend})], digits_baseline.model, digits_baseline.spec
    )
    m = result.row.measurement
    assert m.accuracy is not None and abs(base_acc - m.accuracy) <= 1.0
    assert m.latency_ms_bs1 is not None and m.latency_ms_bs64 is not None
    assert m.bytes == _expected_int8_bytes(per_channel=backend != "qnnpack")
    weights = "per-tensor" if backend == "qnnpack" else "per-channel"
    assert result.row.label == f"quantize-int8 backend={backend} ({backend}, {weights}, histogram)"
    assert result.spec.transforms[-1]["backend"] == backend
    assert isinstance(result.model, QuantizedSequential) and result.model.backend == backend
    assert torch.backends.quantized.engine == engine  # measuring did not leave the engine switched


# An engine whose kernels give the model different outputs (fbgemm, x86 and onednn agree on digits-cnn).
FOREIGN_ENGINE = {"qnnpack": "fbgemm", "fbgemm": "qnnpack", "x86": "qnnpack", "onednn": "qnnpack"}


@pytest.mark.parametrize("backend", ["qnnpack", "fbgemm", "x86", "onednn"])
def test_model_does_not_depend_on_the_global_engine(
    digits: DatasetSplit, digits_baseline: Baseline, backend: str
) -> None:
    v = _apply("quantize-int8", digits_baseline, digits, backend=backend)
    x = digits.eval_x
    ref = v.model(x)
    foreign = FOREIGN_ENGINE[backend]
    with quantized_engine(foreign):  # what the binding prevents: weights re-packed for the foreign engine
        unbound = copy.deepcopy(nn.Sequential(OrderedDict(v.model.named_children())))
        assert not torch.equal(unbound(x), ref)
    torch.backends.quantized.engine = foreign
    # weights are re-packed when loaded or copied: that must happen for the model's backend, not the global engine
    loaded, spec = model_from_bytes(model_to_bytes(v.model, v.spec))
    assert isinstance(loaded, QuantizedSequential) and loaded.backend == backend
    assert spec.transforms[-1]["backend"] == backend
    assert torch.equal(loaded(x), ref)
    copied = copy.deepcopy(v.model)
    assert copied.backend == backend and torch.equal(copied(x), ref)
    assert torch.equal(v.model(x), ref)
    assert torch.backends.quantized.engine == foreign


@pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("observer", ["histogram", "minmax"])
def test_qconfig_follows_torch_default_for_each_backend(backend: str, observer: str) -> None:
    """Activation reduce_range and per-channel weights as ``get_default_qconfig(backend)`` has them,
    whichever observer; the weight scheme flips only when asked."""
    from torch.ao.quantization import get_default_qconfig

    torch_default = get_default_qconfig(backend)
    per_channel_schemes = (torch.per_channel_symmetric, torch.per_channel_affine)
    torch_per_channel = torch_default.weight().qscheme in per_channel_schemes
    assert default_per_channel(backend) == torch_per_channel == (backend != "qnnpack")
    ours = _qconfig(backend, default_per_channel(backend), observer)
    assert ours.activation().reduce_range == torch_default.activation().reduce_range == (backend in ("fbgemm", "x86"))
    assert type(ours.activation()).__name__ == ("HistogramObserver" if observer == "histogram" else "MinMaxObserver")
    assert ours.weight().qscheme == torch_default.weight().qscheme
    flipped = _qconfig(backend, not default_per_channel(backend), observer)
    assert (flipped.weight().qscheme in per_channel_schemes) == (not torch_per_channel)
    assert flipped.weight().dtype == torch.qint8


def test_unavailable_backend_is_rejected_with_the_available_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda _: ["qnnpack", "none"]))
    assert check_backend("qnnpack") == "qnnpack"
    with pytest.raises(ValueError, match=r"'x86' is not available on this machine; available: qnnpack$"):
        check_backend("x86")


def test_default_engine_is_pytorchs_own_default_for_the_cpu() -> None:
    every = ["qnnpack", "onednn", "x86", "fbgemm", "none"]
    assert default_engine("x86_64", every) == default_engine("AMD64", every) == "x86"
    assert default_engine("aarch64", every) == default_engine("arm64", every) == default_engine("armv7l", every)
    assert default_engine("aarch64", every) == "qnnpack"
    # a PyTorch without the preferred engine: the next one it has
    assert default_engine("x86_64", ["qnnpack", "fbgemm", "none"]) == "fbgemm"
    assert default_engine("x86_64", ["qnnpack", "none"]) == "qnnpack"
    assert default_engine("aarch64", ["onednn", "x86", "none"]) == "onednn"
    # on this machine: what a fresh PyTorch process picks by itself
    import subprocess
    import sys

    fresh = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.backends.quantized.engine)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert DEFAULT_BACKEND == default_engine() == fresh
    assert QuantizeInt8Params().backend == QuantizeDynamicParams().backend == DEFAULT_BACKEND


def test_default_params_quantize_with_the_default_engine(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    v = _apply("quantize-int8", digits_baseline, digits)
    assert isinstance(v.model, QuantizedSequential) and v.model.backend == DEFAULT_BACKEND
    assert v.spec.transforms[-1]["backend"] == v.notes["backend"] == DEFAULT_BACKEND
    for backend in available_backends():  # every engine stays selectable by name
        assert QuantizeInt8Params(backend=backend).backend == backend


def test_a_missing_engine_is_refused_when_the_params_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the API runs at POST /jobs (validate_steps): a 422, not a failure in the worker."""
    monkeypatch.setattr(type(torch.backends.quantized), "supported_engines", property(lambda _: ["qnnpack", "none"]))
    assert available_backends() == ["qnnpack"]
    for params_model in (QuantizeInt8Params, QuantizeDynamicParams):
        with pytest.raises(ValueError, match=r"'x86' is not available on this machine; available: qnnpack"):
            params_model(backend="x86")
        assert params_model(backend="qnnpack").backend == "qnnpack"
    expected = r"(?s)step 1: quantize-int8: backend: .*'fbgemm' is not available.*available: qnnpack"
    with pytest.raises(JobInputError, match=expected):
        validate_steps([Step(technique="quantize-int8", params={"backend": "fbgemm"})])


def test_calibration_is_seeded(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    x = digits.eval_x
    a = _apply("quantize-int8", digits_baseline, digits, calibration_samples=200, seed=1).model
    b = _apply("quantize-int8", digits_baseline, digits, calibration_samples=200, seed=1).model
    c = _apply("quantize-int8", digits_baseline, digits, calibration_samples=200, seed=2).model
    assert torch.equal(a(x), b(x))
    assert a.quant.scale.item() == b.quant.scale.item()
    assert (a.quant.scale.item(), a.fc1.scale) != (c.quant.scale.item(), c.fc1.scale)


@pytest.mark.parametrize(
    ("technique", "params"),
    [
        ("quantize-int8", {"per_channel": True}),
        ("quantize-int8", {"per_channel": False, "observer": "minmax"}),
        ("quantize-int8", {"backend": "qnnpack"}),
        ("quantize-int8", {"backend": "x86"}),
        ("quantize-int8", {"backend": "onednn"}),
        ("quantize-int8", {"backend": "onednn", "per_channel": False, "observer": "minmax"}),
        ("quantize-dynamic", {}),
        ("quantize-dynamic", {"per_channel": True}),
        ("quantize-dynamic", {"backend": "x86"}),
        ("quantize-dynamic", {"backend": "onednn", "per_channel": True}),
    ],
)
def test_safetensors_round_trip_gives_identical_outputs(
    digits: DatasetSplit, digits_baseline: Baseline, technique: str, params: dict[str, Any]
) -> None:
    v = _apply(technique, digits_baseline, digits, **params)
    data = model_to_bytes(v.model, v.spec)
    loaded, spec = model_from_bytes(data)
    assert spec == v.spec
    assert [type(m) for m in loaded.modules()] == [type(m) for m in v.model.modules()]
    assert torch.equal(loaded(digits.eval_x), v.model(digits.eval_x))
    assert len(data) < dense_size(digits_baseline.model).bytes / 2


def test_dynamic_quantizes_only_linear_layers(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    v = _apply("quantize-dynamic", digits_baseline, digits, backend="fbgemm")
    m = v.model
    assert isinstance(m, QuantizedSequential)
    assert type(m.fc1) is quantized.dynamic.Linear and type(m.fc2) is quantized.dynamic.Linear
    assert type(m.conv1) is nn.Conv2d and type(m.relu3) is nn.ReLU
    assert v.notes["quantized"] == ["fc1", "fc2"]
    assert v.spec.transforms == [{"kind": "quantize-dynamic", "backend": "fbgemm", "per_channel": False}]
    conv_fp32 = 4 * sum(w + o for n, (w, o) in DIGITS_LAYERS.items() if n.startswith("conv"))
    linear_int8 = sum(w + 8 + 4 * o for n, (w, o) in DIGITS_LAYERS.items() if n.startswith("fc"))
    assert dense_size(m).bytes == conv_fp32 + linear_int8 == 52_920
    acc, base_acc = v.model(digits.eval_x).argmax(1), digits_baseline.model(digits.eval_x).argmax(1)
    agreement = (acc == base_acc).float().mean().item()
    assert agreement > 0.99


def test_lenet5_reports_tanh_as_not_fusable() -> None:
    model, spec, data = _untrained("lenet5")
    tech = get_technique("quantize-int8")
    v = tech.apply(model, spec, tech.params_model(), _ctx(data, model, spec, n=32))
    assert isinstance(v, Variant)
    assert v.notes["fused"] == []
    assert v.notes["not_fused"] == ["conv1+act1 (Tanh)", "conv2+act2 (Tanh)", "fc1+act3 (Tanh)", "fc2+act4 (Tanh)"]
    assert type(v.model.conv1) is quantized.Conv2d and type(v.model.fc3) is quantized.Linear
    assert type(v.model.act1) is nn.Tanh  # runs on quantized tensors, unfused
    out, ref = v.model(data.eval_x), model(data.eval_x)
    assert out.shape == (16, 10)
    # quantized tanh outputs use a fixed 1/128 scale: within two of its steps (this CPU: 0.0119, 1.5 steps)
    assert (out - ref).abs().max().item() < 2 / 128


def test_mnist_cnn_fuses_conv_bn_relu() -> None:
    model, spec, data = _untrained("mnist-cnn")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them matters
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    tech = get_technique("quantize-int8")
    v = tech.apply(model, spec, tech.params_model(), _ctx(data, model, spec, n=64))
    assert isinstance(v, Variant)
    assert v.notes["fused"] == ["conv1+bn1+relu1", "conv2+bn2+relu2", "conv3+bn3+relu3", "fc1+relu4"]
    m = v.model
    for i in (1, 2, 3):
        assert type(m.get_submodule(f"conv{i}")) is intrinsic.quantized.ConvReLU2d
        assert isinstance(m.get_submodule(f"bn{i}"), nn.Identity)
        assert m.get_submodule(f"conv{i}").bias() is not None  # BatchNorm folded into a bias
    assert type(m.fc1) is intrinsic.quantized.LinearReLU
    assert type(model.bn1) is nn.BatchNorm2d  # the input model keeps its BatchNorm
    out, ref = m(data.eval_x), model(data.eval_x)
    assert (out - ref).abs().max().item() < 0.05 * ref.abs().max().item()
    ops, ops_fp32 = count_ops(m, spec.input_shape), count_ops(model, spec.input_shape)
    assert (ops.macs, ops.activation_ops) == (ops_fp32.macs, ops_fp32.activation_ops)


def test_nested_sequential_fuses_across_levels_and_keeps_float_islands() -> None:
    """A separable-style conv (Sequential of v, h) followed by ReLU; SiLU and BatchNorm1d have no
    int8 kernel and run in fp32 between a dequantize and a quantize."""
    v_args = {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 1], "padding": [1, 0]}
    h_args = {"in_channels": 4, "out_channels": 8, "kernel_size": [1, 3], "padding": [0, 1]}
    layers = [
        {
            "name": "conv1",
            "type": "Sequential",
            "layers": [
                {"name": "v", "type": "Conv2d", "args": v_args},
                {"name": "h", "type": "Conv2d", "args": h_args},
            ],
        },
        {"name": "relu1", "type": "ReLU"},
        {"name": "act", "type": "SiLU"},
        {"name": "flatten", "type": "Flatten"},
        {"name": "fc1", "type": "Linear", "args": {"in_features": 512, "out_features": 32}},
        {"name": "bn", "type": "BatchNorm1d", "args": {"num_features": 32}},
        {"name": "fc2", "type": "Linear", "args": {"in_features": 32, "out_features": 10}},
        {"name": "norm", "type": "BatchNorm1d", "args": {"num_features": 10}},
    ]
    model, spec, data = _untrained(layers, (1, 8, 8))
    tech = get_technique("quantize-int8")
    v = tech.apply(model, spec, tech.params_model(), _ctx(data, model, spec, n=32))
    assert isinstance(v, Variant)
    assert v.spec.transforms[-1]["fused"] == [["conv1.h", "relu1"], ["fc1", "bn"], ["fc2", "norm"]]
    assert v.notes["float_islands"] == ["act (SiLU)"]
    assert type(v.model.get_submodule("conv1.v")) is quantized.Conv2d
    assert type(v.model.get_submodule("conv1.h")) is intrinsic.quantized.ConvReLU2d
    assert type(v.model.get_submodule("act.layer")) is nn.SiLU
    loaded, _ = model_from_bytes(model_to_bytes(v.model, v.spec))
    assert torch.equal(loaded(data.eval_x), v.model(data.eval_x))


def test_resnet18_uses_its_own_fuse_model_and_stubs() -> None:
    model, spec, data = _untrained([{"name": "net", "type": "tv.resnet18", "args": {"num_classes": 10}}], (3, 32, 32))
    data = data.subset(8, 4)
    tech = get_technique("quantize-int8")
    v = tech.apply(model, spec, tech.params_model(), _ctx(data, model, spec, n=8))
    assert isinstance(v, Variant)
    assert v.spec.transforms[-1]["fuse_model"] == "net" and v.spec.transforms[-1]["fused"] == []
    assert v.notes["fused"] == ["net: torchvision fuse_model(), 20 conv+bn(+relu) groups"]
    assert [n for n, _ in v.model.named_children()] == ["net"]  # no extra stubs: it has its own
    assert type(v.model.net.conv1) is intrinsic.quantized.ConvReLU2d
    assert type(v.model.net.fc) is quantized.Linear
    loaded, _ = model_from_bytes(model_to_bytes(v.model, v.spec))
    assert torch.equal(loaded(data.eval_x), v.model(data.eval_x))


def test_chain_orthogonal_then_int8(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    ctx = _ctx(digits, digits_baseline.model, digits_baseline.spec, digits_baseline.measurement.accuracy)
    steps = [
        Step(technique="orthogonal", params={"layers": ["fc2"], "epochs": 0}),
        Step(technique="quantize-int8", params={"observer": "minmax"}),
    ]
    [result] = Runner(ctx, latency_runs=1).run(steps, digits_baseline.model, digits_baseline.spec)
    assert result.row.technique == "orthogonal → quantize-int8"
    assert result.spec.transforms[-1]["kind"] == "quantize-int8"
    assert result.model is not None and type(result.model.fc2) is quantized.Linear
    loaded, _ = model_from_bytes(model_to_bytes(result.model, result.spec))
    assert torch.equal(loaded(digits.eval_x), result.model(digits.eval_x))


def test_chain_separable_then_int8_fuses_the_inner_conv(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    ctx = _ctx(digits, digits_baseline.model, digits_baseline.spec, digits_baseline.measurement.accuracy)
    steps = [
        Step(technique="separable", params={"layers": ["conv2"], "epochs": 0}),
        Step(technique="quantize-int8", params={}),
    ]
    [result] = Runner(ctx, latency_runs=1).run(steps, digits_baseline.model, digits_baseline.spec)
    model = result.model
    assert model is not None
    assert ["conv2.h", "relu2"] in result.spec.transforms[-1]["fused"]
    assert type(model.get_submodule("conv2.v")) is quantized.Conv2d
    assert type(model.get_submodule("conv2.h")) is intrinsic.quantized.ConvReLU2d
    loaded, _ = model_from_bytes(model_to_bytes(model, result.spec))
    assert torch.equal(loaded(digits.eval_x), model(digits.eval_x))


@pytest.mark.skipif("prune-channels" not in TECHNIQUES, reason="prune-channels is not implemented in this tree yet")
def test_chain_prune_channels_remove_then_int8(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    ctx = _ctx(digits, digits_baseline.model, digits_baseline.spec, digits_baseline.measurement.accuracy)
    steps = [
        Step(technique="prune-channels", params={"amount": 0.5, "mode": "remove", "epochs": 0}),
        Step(technique="quantize-int8", params={}),
    ]
    [result] = Runner(ctx, latency_runs=1).run(steps, digits_baseline.model, digits_baseline.spec)
    model = result.model
    assert model is not None and type(model.conv1) is intrinsic.quantized.ConvReLU2d
    assert model.conv1.out_channels == 8 and model.conv2.out_channels == 16 and model.fc2.out_features == 10
    assert result.row.measurement.bytes < _expected_int8_bytes(per_channel=True) / 2
    loaded, spec = model_from_bytes(model_to_bytes(model, result.spec))
    assert spec.transforms[-1]["kind"] == "quantize-int8"
    assert torch.equal(loaded(digits.eval_x), model(digits.eval_x))


def test_rejects_quantized_input_search_and_unknown_options(int8: Variant, digits: DatasetSplit) -> None:
    tech = get_technique("quantize-int8")
    with pytest.raises(ValueError, match="already quantized"):
        tech.apply(int8.model, int8.spec, tech.params_model(), _ctx(digits, int8.model, int8.spec))
    with pytest.raises(JobInputError, match="no search mode"):
        Runner(_ctx(digits, int8.model, int8.spec)).run(
            [Step(technique="quantize-int8", params={"search": True})], int8.model, int8.spec
        )
    for bad in ({"backend": "xnnpack"}, {"observer": "mse"}, {"calibration_samples": 0}, {"bits": 4}):
        with pytest.raises(ValueError):
            tech.params_model(**bad)
    with pytest.raises(ValueError):
        get_technique("quantize-dynamic").params_model(observer="minmax")
    schema = tech.params_schema()["properties"]
    assert all(schema[f].get("description") for f in ("backend", "per_channel", "observer", "calibration_samples"))
