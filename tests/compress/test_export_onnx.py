"""ONNX export of every variant: onnxruntime (CPU provider) runs it, agrees with PyTorch, same bytes twice."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import onnx
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from compress.baseline import Baseline, resolve_spec, train_baseline
from compress.datasets import DatasetSplit
from compress.export_onnx import (
    OUTPUT_NAME,
    ExportError,
    OnnxExport,
    export_onnx,
    measure_ort_latency,
    ort_predict,
    ort_session,
)
from compress.layer_spec import ModelSpec
from compress.persistence import model_from_bytes, model_to_bytes
from compress.techniques.base import Context, Variant, get_technique
from compress.techniques.orthogonal import orthogonalize
from compress.training import TrainConfig

CALIBRATION = 1000
SEED = 0

# One fast variant per technique (and mode); the agreement thresholds are the issue's.
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "orthogonal": ("orthogonal", {"epochs": 1}),
    "separable": ("separable", {"epochs": 1}),
    "narrow": ("narrow", {"width": 0.5, "epochs": 3}),
    "prune-l1": ("prune-l1", {"amount": 0.7, "scope": "global", "retrain": "finetune", "epochs": 1}),
    "prune-channels-remove": ("prune-channels", {"amount": 0.5, "mode": "remove", "epochs": 1}),
    "prune-channels-mask": ("prune-channels", {"amount": 0.5, "mode": "mask", "epochs": 1}),
    "quantize-dynamic": ("quantize-dynamic", {}),
    "quantize-dynamic-per-channel": ("quantize-dynamic", {"per_channel": True}),
    "quantize-int8": ("quantize-int8", {}),
    "quantize-int8-per-tensor": ("quantize-int8", {"per_channel": False, "observer": "minmax"}),
}


@pytest.fixture(autouse=True)
def _restore_engine() -> Iterator[None]:
    engine = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = engine


@pytest.fixture(scope="module")
def mnist_cnn_on_digits(digits: DatasetSplit) -> Baseline:
    """mnist-cnn (conv+BatchNorm+ReLU blocks, dropout) on the 8x8 digits: BatchNorm folding in int8."""
    spec = resolve_spec("mnist-cnn", digits.input_shape, digits.num_classes)
    return train_baseline(spec, digits, TrainConfig(epochs=4, seed=0, lr=3e-3), latency_runs=1)


def _variant(base: Baseline, data: DatasetSplit, technique: str, params: dict[str, Any]) -> Variant:
    tech = get_technique(technique)
    ctx = Context(data, base.model, base.spec, base.measurement.accuracy, calibration_samples=CALIBRATION)
    out = tech.apply(base.model, base.spec, tech.params_model(seed=SEED, **params), ctx)
    return out[0] if isinstance(out, list) else out


def _export(model: nn.Module, spec: ModelSpec, data: DatasetSplit) -> OnnxExport:
    return export_onnx(model, spec, data.calibration_subset(CALIBRATION, SEED))


@torch.inference_mode()
def _torch_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + 256]) for i in range(0, len(x), 256)])


def _check(model: nn.Module, spec: ModelSpec, exported: OnnxExport, data: DatasetSplit) -> dict[str, float]:
    """Agreement of the onnxruntime model with PyTorch's on the whole evaluation split, per the issue."""
    proto = onnx.load_from_string(exported.data)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort_session(exported.data, threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    ort_pred = ort_predict(session, data.eval_x).argmax(1)
    torch_pred = _torch_logits(model, data.eval_x).argmax(1)
    agree = (ort_pred == torch_pred).float().mean().item() * 100
    acc_ort = (ort_pred == data.eval_y).float().mean().item() * 100
    acc_torch = (torch_pred == data.eval_y).float().mean().item() * 100
    if exported.info["route"] == "ort-static-qdq":
        # PyTorch's x86/fbgemm qconfig quantizes activations to 7 bits (reduce_range), onnxruntime to 8: the
        # export may be the more accurate of the two (here by 2 of 359 samples), never the less accurate
        assert acc_ort >= acc_torch - 0.3 and agree >= 99.0, (acc_ort, acc_torch, agree)
    else:
        assert agree >= 99.5, (agree, acc_ort, acc_torch)
    # the batch dimension is dynamic
    for n in (1, 7):
        out = session.run([OUTPUT_NAME], {"input": data.eval_x[:n].numpy()})[0]
        assert out.shape == (n, spec.num_classes)
    return {"agree": agree, "acc_ort": acc_ort, "acc_torch": acc_torch}


def test_fp32_baseline_exports_and_agrees(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    exported = _export(digits_baseline.model, digits_baseline.spec, digits)
    assert exported.info == {"route": "fp32", "opset": 17, "exporter": "torch.onnx.export (TorchScript)"}
    _check(digits_baseline.model, digits_baseline.spec, exported, digits)
    ops = {n.op_type for n in onnx.load_from_string(exported.data).graph.node}
    assert "MaxPool" in ops  # PyTorch's pooling op, not compress.pooling's strided views
    meta = {p.key: p.value for p in onnx.load_from_string(exported.data).metadata_props}
    assert meta["netreduce.route"] == "fp32"


@pytest.mark.parametrize("case", list(CASES))
def test_every_technique_on_digits_cnn_agrees_with_pytorch(
    digits: DatasetSplit, digits_baseline: Baseline, case: str
) -> None:
    technique, params = CASES[case]
    v = _variant(digits_baseline, digits, technique, params)
    exported = _export(v.model, v.spec, digits)
    expected = {"quantize-int8": "ort-static-qdq", "quantize-dynamic": "ort-dynamic"}.get(technique, "fp32")
    assert exported.info["route"] == expected
    _check(v.model, v.spec, exported, digits)
    if technique == "quantize-int8":
        ops = {n.op_type for n in onnx.load_from_string(exported.data).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        assert exported.info["calibration_samples"] == CALIBRATION
    if technique == "quantize-dynamic":
        ops = {n.op_type for n in onnx.load_from_string(exported.data).graph.node}
        assert ops & {"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul"}


@pytest.mark.parametrize("technique", ["quantize-int8", "prune-channels", "separable"])
def test_mnist_cnn_with_batchnorm_agrees(digits: DatasetSplit, mnist_cnn_on_digits: Baseline, technique: str) -> None:
    params = {"prune-channels": {"amount": 0.5, "mode": "remove", "epochs": 1}, "separable": {"epochs": 1}}
    base = mnist_cnn_on_digits
    v = _variant(base, digits, technique, params.get(technique, {}))
    _check(v.model, v.spec, _export(v.model, v.spec, digits), digits)


def test_mnist_cnn_fp32_agrees(digits: DatasetSplit, mnist_cnn_on_digits: Baseline) -> None:
    base = mnist_cnn_on_digits
    _check(base.model, base.spec, _export(base.model, base.spec, digits), digits)


@pytest.mark.parametrize("case", ["prune-l1", "quantize-int8", "quantize-dynamic"])
def test_same_model_same_bytes_and_after_a_storage_round_trip(
    digits: DatasetSplit, digits_baseline: Baseline, case: str
) -> None:
    technique, params = CASES[case]
    v = _variant(digits_baseline, digits, technique, params)
    first, second = _export(v.model, v.spec, digits), _export(v.model, v.spec, digits)
    assert first.data == second.data
    stored, spec = model_from_bytes(model_to_bytes(v.model, v.spec))
    assert _export(stored, spec, digits).data == first.data


def test_pruning_masks_and_parametrizations_still_attached_are_baked(
    digits: DatasetSplit, digits_baseline: Baseline
) -> None:
    model = copy.deepcopy(digits_baseline.model)
    prune.l1_unstructured(model.fc1, "weight", amount=0.8)
    orthogonalize(model, ["conv2"])
    exported = _export(model, digits_baseline.spec, digits)
    _check(model, digits_baseline.spec, exported, digits)
    names = [i.name for i in onnx.load_from_string(exported.data).graph.initializer]
    assert not any("mask" in n or "orig" in n or "parametrizations" in n for n in names), names
    assert prune.is_pruned(model)  # the caller's model is left as it was


def test_int8_without_calibration_is_an_export_error(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    v = _variant(digits_baseline, digits, "quantize-int8", {})
    with pytest.raises(ExportError, match="calibration"):
        export_onnx(v.model, v.spec, None)


def test_unknown_transform_and_old_opset_are_export_errors(digits_baseline: Baseline) -> None:
    spec = digits_baseline.spec.model_copy(update={"transforms": [{"kind": "mystery"}]})
    with pytest.raises(ExportError, match="mystery"):
        export_onnx(digits_baseline.model, spec)
    with pytest.raises(ExportError, match="opset"):
        export_onnx(digits_baseline.model, digits_baseline.spec, opset=13)


def test_measure_ort_latency(digits_baseline: Baseline) -> None:
    exported = export_onnx(digits_baseline.model, digits_baseline.spec)
    lat = measure_ort_latency(exported.data, digits_baseline.spec.input_shape, (1, 64), threads=1, runs=3)
    assert set(lat) == {"ort_latency_ms_bs1", "ort_latency_ms_bs64"}
    assert all(v > 0 for v in lat.values())


def test_the_dynamo_exporter_agrees_too(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    pytest.importorskip("onnxscript")
    v = _variant(digits_baseline, digits, *CASES["quantize-int8"])
    exported = export_onnx(v.model, v.spec, digits.calibration_subset(CALIBRATION, SEED), exporter="dynamo")
    assert exported.info["exporter"] == "torch.onnx.export (dynamo)"
    _check(v.model, v.spec, exported, digits)
