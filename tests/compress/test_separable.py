"""separable: k×k convs become (k×1, 1×k) pairs with hand-computed params and MACs; SVD init beats
random init; the rewritten spec round-trips; search through the Runner picks the strongest passing trial."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compress.baseline import Baseline, resolve_spec
from compress.datasets import DatasetSplit
from compress.layer_spec import build_model, find_layer
from compress.measure import measure
from compress.ops_count import count_ops
from compress.persistence import model_from_bytes, model_to_bytes
from compress.runner import Runner, Step
from compress.techniques import Context, get_technique
from compress.techniques.separable import SeparableParams, separate_layers

# digits-cnn: conv1 Conv2d(1, 16, 3, padding=1), conv2 Conv2d(16, 32, 3, padding=1), both on 8x8 maps.
BASE_PARAMS = (16 * 1 * 9 + 16) + (32 * 16 * 9 + 32) + (512 * 64 + 64) + (64 * 10 + 10)  # 38282
BASE_MACS = 64 * 9 * 1 * 16 + 64 * 9 * 16 * 32 + 512 * 64 + 64 * 10  # 9216 + 294912 + 32768 + 640


def _ctx(digits: DatasetSplit, base: Baseline) -> Context:
    return Context(digits, base.model, base.spec, base.measurement.accuracy)


def _rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out - ref).norm() / ref.norm())


def test_selected_conv_becomes_k1_then_1k(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    assert base.measurement.n_params == BASE_PARAMS == 38282
    assert base.measurement.macs == BASE_MACS == 337536
    tech = get_technique("separable")
    variant = tech.apply(base.model, base.spec, SeparableParams(layers=["conv2"], epochs=0), _ctx(digits, base))
    pair = variant.model.get_submodule("conv2")
    assert isinstance(pair, nn.Sequential)
    v, h = pair.get_submodule("v"), pair.get_submodule("h")
    assert isinstance(v, nn.Conv2d) and isinstance(h, nn.Conv2d)
    assert (v.in_channels, v.out_channels, v.kernel_size, v.padding, v.stride) == (16, 16, (3, 1), (1, 0), (1, 1))
    assert (h.in_channels, h.out_channels, h.kernel_size, h.padding, h.stride) == (16, 32, (1, 3), (0, 1), (1, 1))
    assert v.bias is None and h.bias is not None
    assert isinstance(variant.model.get_submodule("conv1"), nn.Conv2d)  # not selected, untouched
    assert find_layer(variant.spec.layers, "conv2").type == "Sequential"
    assert find_layer(variant.spec.layers, "conv2.h").args["kernel_size"] == [1, 3]

    ops = count_ops(variant.model, base.spec.input_shape)
    shapes = {row.name: row.output_shape for row in ops.layers}
    assert shapes["conv2.v"] == (16, 8, 8) and shapes["conv2.h"] == (32, 8, 8)  # conv2 was (32, 8, 8)
    with torch.no_grad():
        assert variant.model(digits.eval_x[:5]).shape == (5, 10)

    m = measure(variant.model, variant.spec, latency=False)
    # conv2 4640 params (32*16*9 + 32) -> v 16*16*3 = 768 (no bias) + h 32*16*3 + 32 = 1568.
    assert m.n_params == BASE_PARAMS - 4640 + 768 + 1568 == 35978
    # conv2 64 positions * 9 * 16 * 32 = 294912 MACs -> v 64*3*16*16 = 49152 + h 64*3*16*32 = 98304.
    assert m.macs == BASE_MACS - 294912 + 49152 + 98304 == 190080


def test_top_k_two_and_explicit_rank(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    params = SeparableParams(top_k=2, rank=2, epochs=0)
    variant = get_technique("separable").apply(base.model, base.spec, params, _ctx(digits, base))
    assert variant.notes["separable_layers"] == ["conv2", "conv1"]  # heaviest first
    m = measure(variant.model, variant.spec, latency=False)
    # rank 2: conv1 160 -> v 2*1*3 + h 16*2*3 + 16 = 6 + 112; conv2 4640 -> v 2*16*3 + h 32*2*3 + 32 = 96 + 224.
    assert m.n_params == BASE_PARAMS - 160 - 4640 + 6 + 112 + 96 + 224 == 33920
    # MACs: conv1 -> 64*3*1*2 + 64*3*2*16 = 384 + 6144; conv2 -> 64*3*16*2 + 64*3*2*32 = 6144 + 12288.
    assert m.macs == BASE_MACS - 9216 - 294912 + 384 + 6144 + 6144 + 12288 == 58368
    assert variant.notes["rank"] == {"conv2": 2, "conv1": 2}


def test_svd_init_beats_random_before_fine_tuning(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline.model
    x = digits.eval_x[:128]
    with torch.no_grad():
        features = base.relu1(base.conv1(x))
        ref = base.conv2(features)
        errors = {}
        for init in ("svd", "random"):
            torch.manual_seed(0)
            model, _, _ = separate_layers(base, digits_baseline.spec, ["conv2"], None, init)  # type: ignore[arg-type]
            errors[init] = _rel_error(model.conv2(features), ref)
    assert errors["svd"] < 0.3
    assert errors["random"] > 0.9
    assert errors["svd"] < errors["random"] / 3


def test_full_spatial_rank_reproduces_the_conv() -> None:
    """At rank min(C_in, C_out)*k the SVD split is exact, including stride and padding."""

    def conv(name: str, c_in: int, c_out: int, k: int, **extra: object) -> dict:
        args = {"in_channels": c_in, "out_channels": c_out, "kernel_size": k, **extra}
        return {"name": name, "type": "Conv2d", "args": args}

    layers = [
        conv("a", 3, 4, 5, padding=2, stride=2),  # 12x12 -> 6x6
        conv("b", 4, 6, 3, padding="same"),  # 6x6
        conv("c", 6, 5, 3),  # 6x6 -> 4x4
        {"name": "flat", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 5 * 4 * 4, "out_features": 3}},
    ]
    spec = resolve_spec(layers, (3, 12, 12), 3)
    torch.manual_seed(1)
    model = build_model(spec)
    full_rank = 3 * 5  # conv a: min(3, 4) * 5; b: min(4, 6) * 3 = 12; c: min(6, 5) * 3 = 15
    new, new_spec, infos = separate_layers(model, spec, ["a", "b", "c"], full_rank, "svd")
    assert [infos[n]["max_rank"] for n in ("a", "b", "c")] == [15, 12, 15]
    assert new.get_submodule("a.v").stride == (2, 1) and new.get_submodule("a.h").stride == (1, 2)
    x = torch.randn(4, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(new(x), model(x), atol=1e-5)
        for name in ("a", "b", "c"):
            assert infos[name]["svd_relative_error"] < 1e-6
        rebuilt = build_model(new_spec)
        rebuilt.load_state_dict(new.state_dict())
        assert torch.equal(rebuilt(x), new(x))


def test_round_trip_after_fine_tuning(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    params = SeparableParams(top_k=2, epochs=1, seed=1)
    variant = get_technique("separable").apply(base.model, base.spec, params, _ctx(digits, base))
    assert all(torch.equal(before[k], v) for k, v in base.model.state_dict().items())
    assert isinstance(base.model.get_submodule("conv2"), nn.Conv2d)

    restored, spec = model_from_bytes(model_to_bytes(variant.model, variant.spec))
    assert spec == variant.spec
    x = digits.eval_x[:32]
    with torch.no_grad():
        assert torch.equal(restored(x), variant.model(x))


def test_ineligible_layer_lists_eligible_ones(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    with pytest.raises(ValueError, match=r"\['fc1'\].*conv2, conv1"):
        get_technique("separable").apply(base.model, base.spec, SeparableParams(layers=["fc1"]), _ctx(digits, base))


def test_search_picks_strongest_passing_trial(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    runner = Runner(_ctx(digits, base), base.measurement, latency_runs=2)
    step = Step(technique="separable", params={"search": True, "max_accuracy_drop": 1.0, "epochs": 1})
    rows = [r.row for r in runner.run([step], base.model, base.spec)]
    assert [r.strength for r in rows] == [1.0, 2.0]
    passing = [r for r in rows if r.accuracy_drop is not None and r.accuracy_drop <= 1.0]
    chosen = [r for r in rows if not r.trial]
    assert len(passing) == 2 and len(chosen) == 1
    assert chosen[0].strength == max(r.strength or 0 for r in passing) == 2.0
    assert chosen[0].params["layers"] == ["conv2", "conv1"]
    assert chosen[0].measurement.macs == BASE_MACS - 9216 - 294912 + (64 * 3 * 1 * 1 + 64 * 3 * 1 * 16) + 147456
