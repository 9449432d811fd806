"""quantize-int8 through PT2E (torchao prepare_pt2e/convert_pt2e, X86InductorQuantizer) for networks
that are not Sequential: path choice, quantized residual adds, size at int8, reload, runner rows."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from compress.baseline import resolve_spec
from compress.datasets import DatasetSplit
from compress.layer_spec import LayerSpec, ModelSpec, build_model
from compress.ops_count import count_ops
from compress.persistence import model_from_bytes, model_to_bytes
from compress.runner import Runner, Step
from compress.techniques.base import Context, Variant, get_technique
from compress.techniques.quantize import eager_applies
from compress.techniques.quantize_pt2e import Pt2eQuantized


def _data(shape: tuple[int, int, int], n: int = 32) -> DatasetSplit:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)
    return DatasetSplit("synthetic", x, y, x[:16], y[:16], 10, (0.0,), (1.0,))


def _apply(model: nn.Module, spec: ModelSpec, data: DatasetSplit, **params: object) -> Variant:
    tech = get_technique("quantize-int8")
    out = tech.apply(model, spec, tech.params_model(**params), Context(data, model, spec, calibration_samples=16))
    assert isinstance(out, Variant)
    return out


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def resnet() -> tuple[nn.Module, ModelSpec, DatasetSplit]:
    spec = resolve_spec("resnet18", None, 10)
    torch.manual_seed(0)
    return build_model(spec).eval(), spec, _data(spec.input_shape)


@pytest.fixture(scope="module")
def resnet_int8(resnet: tuple[nn.Module, ModelSpec, DatasetSplit]) -> Variant:
    model, spec, data = resnet
    return _apply(model, spec, data, path="pt2e", runtime="exported")


def test_resnet18_pt2e_quantizes_every_conv_and_every_residual_add(resnet_int8: Variant) -> None:
    notes = resnet_int8.notes
    assert (notes["path"], notes["quantizer"], notes["runtime"]) == ("pt2e", "x86-inductor", "exported")
    assert notes["int8_weighted_layers"] == 21  # 20 convolutions + fc
    assert notes["float_weighted_layers"] == 0
    assert notes["quantized_adds"] == 8  # one per BasicBlock
    assert "pt2e x86-inductor" in resnet_int8.label_suffix
    step = resnet_int8.spec.transforms[-1]
    assert step["kind"] == "quantize-int8" and step["path"] == "pt2e" and step["input_shape"] == [3, 32, 32]


def test_resnet18_pt2e_size_is_int8_weights_plus_qparams_and_folded_biases(
    resnet: tuple[nn.Module, ModelSpec, DatasetSplit], resnet_int8: Variant
) -> None:
    model = resnet[0]
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    weights = sum(m.weight.numel() for m in weighted)
    channels = sum(m.weight.shape[0] for m in weighted)
    assert resnet_int8.size is not None
    # 1 byte per weight; per output channel: fp32 scale + int32 zero point + fp32 bias (BatchNorm folded in)
    assert resnet_int8.size.bytes == weights + 12 * channels
    assert resnet_int8.size.n_params == weights + channels
    float_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert resnet_int8.size.bytes < float_bytes / 3.9


def test_resnet18_pt2e_is_close_to_float_and_reloads_to_the_same_outputs(
    resnet: tuple[nn.Module, ModelSpec, DatasetSplit], resnet_int8: Variant
) -> None:
    model, _, data = resnet
    with torch.no_grad():
        expected = resnet_int8.model(data.eval_x)
        assert _relative_error(expected, model(data.eval_x)) < 0.2
        blob = model_to_bytes(resnet_int8.model, resnet_int8.spec)
        assert len(blob) < 1.05 * resnet_int8.size.bytes  # type: ignore[union-attr]
        loaded, spec = model_from_bytes(blob)
        assert isinstance(loaded, Pt2eQuantized) and spec.transforms[-1]["path"] == "pt2e"
        assert torch.equal(loaded(data.eval_x), expected)


def test_auto_path_keeps_eager_for_sequential_specs_and_takes_pt2e_for_other_networks() -> None:
    digits = build_model(resolve_spec("digits-cnn", None, 10))
    assert eager_applies(digits)
    quantizable = ModelSpec(  # a stored layer list naming torchvision's quantizable ResNet-18: eager still applies
        input_shape=(3, 32, 32), num_classes=10,
        layers=[LayerSpec(name="net", type="tv.resnet18", args={"num_classes": 10})],
    )  # fmt: skip
    assert eager_applies(build_model(quantizable))
    assert not eager_applies(build_model(resolve_spec("resnet18", None, 10)))  # the built-in: plain torchvision
    assert not eager_applies(torchvision.models.resnet18(num_classes=10))
    spec = resolve_spec("digits-cnn", None, 10)
    v = _apply(digits.eval(), spec, _data(spec.input_shape))
    assert v.notes["path"] == "eager" and "path" not in v.spec.transforms[-1]


def test_plain_torchvision_resnet18_goes_through_pt2e_on_auto() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    spec = resolve_spec("resnet18", None, 10)  # only its input shape is read
    data = _data(spec.input_shape)
    v = _apply(model, spec, data, runtime="exported")
    assert v.notes["path"] == "pt2e" and v.notes["quantized_adds"] == 8
    with torch.no_grad():
        assert _relative_error(v.model(data.eval_x), model(data.eval_x)) < 0.2


def test_pt2e_refuses_per_tensor_weights(resnet: tuple[nn.Module, ModelSpec, DatasetSplit]) -> None:
    model, spec, data = resnet
    with pytest.raises(ValueError, match="per channel"):
        _apply(model, spec, data, path="pt2e", per_channel=False)


class _Residual(nn.Module):
    """conv-bn-relu, conv-bn, + identity, relu, pool, fc: the smallest network with a residual add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)) + y)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


def test_inductor_runtime_compiles_and_agrees_with_the_exported_program() -> None:
    torch.manual_seed(0)
    model = _Residual().eval()
    spec = ModelSpec(input_shape=(3, 8, 8), num_classes=10, layers=[{"name": "x", "type": "Identity"}])
    data = _data((3, 8, 8))
    v = _apply(model, spec, data, path="pt2e", runtime="inductor")
    assert v.notes["runtime"] == "inductor" and v.notes["quantized_adds"] == 1
    assert set(v.notes["compile_seconds"]) == {"bs64", "bs1"}
    exported = Pt2eQuantized(v.model.program, "exported")  # type: ignore[arg-type]
    with torch.no_grad():
        compiled, reference = v.model(data.eval_x), exported(data.eval_x)
    assert _relative_error(compiled, reference) < 0.05


def test_runner_row_counts_float_macs_and_int8_bytes(
    resnet: tuple[nn.Module, ModelSpec, DatasetSplit],
) -> None:
    model, spec, data = resnet
    ctx = Context(data, model, spec, 10.0, calibration_samples=16)
    rows = Runner(ctx, latency_runs=2).run(
        [Step(technique="quantize-int8", params={"path": "pt2e", "runtime": "exported"})], model, spec
    )
    m = rows[0].row.measurement
    assert m.macs == count_ops(model, spec.input_shape).macs > 0
    weighted = [x for x in model.modules() if isinstance(x, nn.Conv2d | nn.Linear)]
    assert m.bytes == sum(x.weight.numel() + 12 * x.weight.shape[0] for x in weighted)
    assert m.accuracy is not None and m.eval_samples == 16
    assert m.latency_ms_bs64 is not None and m.latency_ms_bs64 > 0
    assert rows[0].row.notes["path"] == "pt2e"


def test_onnx_export_of_a_pt2e_program_is_refused_with_its_reason(resnet_int8: Variant) -> None:
    from compress.export_onnx import ExportError, export_onnx

    with pytest.raises(ExportError, match="PT2E"):
        export_onnx(resnet_int8.model, resnet_int8.spec, calibration=torch.zeros(1, 3, 32, 32))


def test_a_stored_pt2e_step_with_an_unknown_runtime_is_refused(
    resnet: tuple[nn.Module, ModelSpec, DatasetSplit],
) -> None:
    from compress.techniques.quantize_pt2e import rebuild_pt2e

    step = {"input_shape": [3, 32, 32], "runtime": "os.system", "observer": "histogram", "activation_qparams": {}}
    with pytest.raises(ValueError, match="runtime"):
        rebuild_pt2e(resnet[0], step)
