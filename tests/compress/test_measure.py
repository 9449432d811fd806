from __future__ import annotations

import pytest
import torch

from compress.architectures import list_architectures
from compress.baseline import resolve_spec
from compress.layer_spec import build_model
from compress.measure import Measurement, measure, measure_latency
from compress.ops_count import count_ops, flop_counter_flops
from compress.persistence import model_from_bytes, model_to_bytes
from compress.size import dense_size

TINY = [
    {"name": "conv1", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 2, "kernel_size": 3}},
    {"name": "relu1", "type": "ReLU"},
    {
        "name": "conv2",
        "type": "Conv2d",
        "args": {"in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1, "stride": 2},
    },
    {"name": "tanh", "type": "Tanh"},
    {"name": "flat", "type": "Flatten"},
    {"name": "fc", "type": "Linear", "args": {"in_features": 12, "out_features": 5}},
]


def test_ops_of_a_tiny_network_follow_the_course_formula() -> None:
    spec = resolve_spec(TINY, (1, 6, 6), 5)
    report = count_ops(build_model(spec), spec.input_shape)
    # conv1: a 3x3 filter over a 6x6 image: (6-3+1)^2 = 16 applications of 3*3 = 9 ops,
    # for 1 input x 2 output channels.
    conv1 = (6 - 3 + 1) ** 2 * 3 * 3 * 1 * 2
    relu1 = 2 * 4 * 4  # one op per activation output
    # conv2 on 4x4 with padding 1, stride 2: floor((4 + 2 - 3) / 2) + 1 = 2 -> 2x2 positions.
    conv2 = 2 * 2 * 3 * 3 * 2 * 3
    tanh = 3 * 2 * 2
    fc = 12 * 5
    assert conv1 == 288 and conv2 == 216
    assert report.macs == conv1 + conv2 + fc == 564
    assert report.activation_ops == relu1 + tanh == 44
    assert report.ops == 608 and report.flops == 1128
    rows = {r.name: r for r in report.layers}
    assert rows["conv2"].output_shape == (3, 2, 2) and rows["conv2"].macs == 216
    assert rows["fc"].params == 12 * 5 + 5
    assert abs(sum(r.macs_share for r in report.layers) - 1.0) < 1e-9


def test_sparse_macs_count_only_nonzero_weights() -> None:
    spec = resolve_spec(TINY, (1, 6, 6), 5)
    model = build_model(spec)
    with torch.no_grad():
        model.conv1.weight[0].zero_()  # half of conv1's weights
        model.fc.weight[:, :6] = 0  # half of fc's weights
    report = count_ops(model, spec.input_shape)
    assert report.sparse_macs == 288 // 2 + 216 + 60 // 2


@pytest.mark.parametrize("name", [a.name for a in list_architectures()])
def test_flops_equal_pytorch_flop_counter(name: str) -> None:
    arch = next(a for a in list_architectures() if a.name == name)
    spec = arch.spec()
    model = build_model(spec)
    assert count_ops(model, spec.input_shape).flops == flop_counter_flops(model, spec.input_shape)


def test_fp32_bytes_are_four_per_parameter() -> None:
    model = build_model(resolve_spec("mnist-cnn"))
    size = dense_size(model)
    assert size.n_params == sum(p.numel() for p in model.parameters()) == 1_701_354
    assert size.bytes == 4 * size.n_params


def test_safetensors_round_trip_gives_identical_outputs(digits_baseline) -> None:
    data = model_to_bytes(digits_baseline.model, digits_baseline.spec)
    assert b"pickle" not in data[:200]
    model, spec = model_from_bytes(data)
    assert spec == digits_baseline.spec
    x = torch.randn(16, *spec.input_shape)
    with torch.no_grad():
        assert torch.equal(model(x), digits_baseline.model(x))


def test_round_trip_keeps_batchnorm_running_stats() -> None:
    spec = resolve_spec("mnist-cnn")
    model = build_model(spec)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 1, 28, 28))
    model.eval()
    again, _ = model_from_bytes(model_to_bytes(model, spec))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_measurement_record_of_the_baseline(digits_baseline, digits) -> None:
    m = digits_baseline.measurement
    assert m.accuracy is not None and m.accuracy >= 90.0
    assert m.eval_samples == len(digits.eval_y)
    assert m.ops == m.macs + m.activation_ops and m.flops == 2 * m.macs
    assert m.bytes == 4 * m.n_params and m.file_bytes and m.file_bytes > m.bytes
    assert m.latency_ms_bs1 and m.latency_ms_bs64 and m.latency_ms_bs64 > m.latency_ms_bs1
    assert m.torch_threads >= 1
    assert [r.name for r in m.layers if r.macs][:2] == ["conv1", "conv2"]


def test_measure_without_data_reports_size_and_ops_only() -> None:
    spec = resolve_spec(TINY, (1, 6, 6), 5)
    m = measure(build_model(spec), spec, data=None, latency=False)
    assert m.accuracy is None and m.latency_ms_bs1 is None and m.macs == 564


def test_latency_is_a_positive_median() -> None:
    model = build_model(resolve_spec("digits-cnn"))
    assert 0 < measure_latency(model, (1, 8, 8), batch_size=4, runs=5) < 1000


def test_measurement_keeps_per_sample_correctness_and_its_interval(digits_baseline, digits) -> None:
    import numpy as np
    from scipy.stats import binomtest

    from compress.correctness import unpack_correct
    from compress.training import evaluate, evaluate_samples

    m = digits_baseline.measurement
    assert m.correct is not None and m.eval_samples == len(digits.eval_y)
    bits = unpack_correct(m.correct, m.eval_samples)
    expected = (digits_baseline.model(digits.eval_x).argmax(1) == digits.eval_y).numpy()
    assert np.array_equal(bits, expected)
    assert m.accuracy == pytest.approx(100 * bits.mean())
    ci = binomtest(int(bits.sum()), len(bits)).proportion_ci(method="wilson")
    assert (m.accuracy_ci_low, m.accuracy_ci_high) == (pytest.approx(100 * ci.low), pytest.approx(100 * ci.high))
    assert m.accuracy_ci_low < m.accuracy < m.accuracy_ci_high
    acc, loss, correct = evaluate_samples(digits_baseline.model, digits)
    assert (acc, loss) == evaluate(digits_baseline.model, digits)  # evaluate's contract is unchanged
    assert correct.dtype == torch.bool and np.array_equal(correct.numpy(), expected)
    # a JSON round trip (the baseline column, a row's extra) keeps the bits
    assert Measurement.model_validate(m.model_dump(mode="json")).correct == m.correct
