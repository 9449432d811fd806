"""Every registered technique's result reloads from its stored bytes to the same model.

A stored model is rebuilt from its spec alone: float layers from ``build_model``, then each recorded
transform replayed by the ``rebuild`` of the technique that recorded it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from compress.baseline import Baseline
from compress.datasets import DatasetSplit
from compress.layer_spec import ModelSpec, SpecError, build_model
from compress.persistence import model_from_bytes, model_to_bytes, rebuild_model
from compress.techniques import Context, Variant, get_technique, list_techniques

# The quickest settings of each technique; a new technique must be added here.
QUICK: dict[str, dict[str, Any]] = {
    "narrow": {"width": 0.5, "epochs": 1},
    "orthogonal": {"epochs": 0},
    "prune-channels": {"amount": 0.5, "epochs": 0},
    "prune-l1": {"amount": 0.5, "retrain": "keep"},
    "quantize-int8": {"calibration_samples": 64},
    "quantize-dynamic": {},
    "separable": {"epochs": 0},
}


def _apply(name: str, model: nn.Module, spec: ModelSpec, data: DatasetSplit, **params: Any) -> Variant:
    tech = get_technique(name)
    out = tech.apply(model, spec, tech.params_model(**params), Context(data, model, spec))
    return out[0] if isinstance(out, list) else out


def _assert_reloads(v: Variant, data: DatasetSplit) -> None:
    loaded, spec = model_from_bytes(model_to_bytes(v.model, v.spec))
    assert spec == v.spec
    assert [(n, type(m)) for n, m in loaded.named_modules()] == [(n, type(m)) for n, m in v.model.named_modules()]
    v.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(data.eval_x), v.model(data.eval_x))


def test_every_registered_technique_is_listed_here() -> None:
    assert sorted(t.name for t in list_techniques()) == sorted(QUICK)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_stored_result_reloads_to_the_same_model(name: str, digits: DatasetSplit, digits_baseline: Baseline) -> None:
    _assert_reloads(_apply(name, digits_baseline.model, digits_baseline.spec, digits, **QUICK[name]), digits)


def test_prune_channels_mask_mode_reloads(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    v = _apply("prune-channels", digits_baseline.model, digits_baseline.spec, digits, amount=0.5, mode="mask", epochs=0)
    _assert_reloads(v, digits)


@pytest.mark.parametrize("first", ["separable", "prune-channels"])
def test_quantized_after_a_structural_change_reloads(first: str, digits: DatasetSplit, digits_baseline: Baseline):
    v = _apply(first, digits_baseline.model, digits_baseline.spec, digits, **QUICK[first])
    q = _apply("quantize-int8", v.model, v.spec, digits, calibration_samples=64)
    assert [t["kind"] for t in q.spec.transforms] == ["quantize-int8"]
    _assert_reloads(q, digits)


def test_build_model_builds_float_layers_only(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    q = _apply("quantize-dynamic", digits_baseline.model, digits_baseline.spec, digits)
    with pytest.raises(SpecError, match=r"records transforms \(quantize-dynamic\).*rebuild_model"):
        build_model(q.spec)
    assert str(build_model(q.spec.model_copy(update={"transforms": []}))) == str(build_model(digits_baseline.spec))
    assert str(rebuild_model(q.spec)) == str(q.model)


def test_unknown_or_non_rebuildable_transform_is_refused(digits_baseline: Baseline) -> None:
    for kind in ("quantize-fp4", "prune-l1"):
        spec = digits_baseline.spec.model_copy(update={"transforms": [{"kind": kind}]})
        with pytest.raises(
            ValueError,
            match=rf"unknown transform '{kind}'; known: prune-channels, quantize-dynamic, quantize-int8, separable$",
        ):
            rebuild_model(spec)
