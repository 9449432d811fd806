"""prune-l1 on the trained digits-cnn: exact sparsity, fixed masks, retrain modes, size, search."""

from __future__ import annotations

import statistics

import pytest
import torch
from pydantic import ValidationError

from compress.baseline import Baseline
from compress.datasets import DatasetSplit
from compress.runner import Runner, Step
from compress.techniques.base import Context, get_technique
from compress.techniques.prune_l1 import PruneL1Params

# digits-cnn on 1x8x8: conv1 1->16 3x3, conv2 16->32 3x3 (8x8 out, pad 1), pool to 4x4, fc1 512->64, fc2 64->10.
WEIGHTS = {"conv1": 144, "conv2": 4608, "fc1": 32768, "fc2": 640}
BIASES = 16 + 32 + 64 + 10
CONV_POSITIONS = 64


def _ctx(digits: DatasetSplit, base: Baseline) -> Context:
    return Context(digits, base.model, base.spec, base.measurement.accuracy)


def _apply(digits: DatasetSplit, base: Baseline, **params: object):
    tech = get_technique("prune-l1")
    return tech.apply(base.model, base.spec, tech.params_model(**params), _ctx(digits, base))


def _run(digits: DatasetSplit, base: Baseline, **params: object):
    return Runner(_ctx(digits, base), latency_runs=2).run(
        [Step(technique="prune-l1", params=params)], base.model, base.spec
    )


def _zeros(model: torch.nn.Module) -> dict[str, int]:
    return {n: int((model.get_submodule(n).weight == 0).sum()) for n in WEIGHTS}


def test_layer_scope_prunes_exactly_amount_of_every_layer_and_leaves_base_untouched(digits, digits_baseline):
    before = {k: v.clone() for k, v in digits_baseline.model.state_dict().items()}
    v = _apply(digits, digits_baseline, amount=0.6, retrain="keep")
    assert _zeros(v.model) == {"conv1": 86, "conv2": 2765, "fc1": 19661, "fc2": 384}  # round(0.6 * n)
    assert v.notes["sparsity_per_layer"] == {"conv1": 0.5972, "conv2": 0.6, "fc1": 0.6, "fc2": 0.6}
    assert not any(n.endswith(("_orig", "_mask")) for n in v.model.state_dict())  # prune.remove done
    for k, t in digits_baseline.model.state_dict().items():
        assert torch.equal(t, before[k]), k


def test_global_scope_prunes_exactly_amount_overall_with_uneven_layers(digits, digits_baseline):
    v = _apply(digits, digits_baseline, amount=0.8, scope="global", retrain="keep")
    zeros = _zeros(v.model)
    total = sum(WEIGHTS.values())
    assert sum(zeros.values()) == round(0.8 * total)
    assert v.notes["sparsity_overall"] == 0.8
    per_layer = v.notes["sparsity_per_layer"]
    assert per_layer["fc1"] > 0.8 > per_layer["conv1"]  # one threshold: the big fc1 loses most


def test_top_k_and_layer_types_restrict_pruning(digits, digits_baseline):
    v = _apply(digits, digits_baseline, amount=0.5, retrain="keep", layer_types=["Conv2d"], top_k=1)
    assert _zeros(v.model) == {"conv1": 0, "conv2": 2304, "fc1": 0, "fc2": 0}
    assert v.notes["pruned_layers"] == ["conv2"]


def test_finetune_keeps_the_mask_and_trains_the_survivors(digits, digits_baseline):
    kept = _apply(digits, digits_baseline, amount=0.9, scope="global", retrain="keep")
    tuned = _apply(digits, digits_baseline, amount=0.9, scope="global", retrain="finetune", epochs=2)
    for name in WEIGHTS:
        w_keep, w_tuned = kept.model.get_submodule(name).weight, tuned.model.get_submodule(name).weight
        assert torch.equal(w_keep == 0, w_tuned == 0), name  # the same weights are zero, none revived
    fc1_keep, fc1_tuned = kept.model.fc1.weight, tuned.model.fc1.weight
    assert (fc1_keep - fc1_tuned).abs().max() > 1e-3  # the survivors did train


def test_keep_finetune_reinit_give_different_rows(digits, digits_baseline):
    rows = {
        r: _run(digits, digits_baseline, amount=0.9, scope="global", retrain=r, epochs=2)[0].row
        for r in ("keep", "finetune", "reinit")
    }
    losses = {r: row.measurement.loss for r, row in rows.items()}
    assert len({round(loss, 6) for loss in losses.values()}) == 3, losses
    # at 90 % the untrained-after-pruning model has lost accuracy that fine-tuning wins back;
    # re-initialised survivors with 2 epochs are far from the trained ones
    assert rows["finetune"].measurement.accuracy > rows["keep"].measurement.accuracy + 5
    assert rows["reinit"].measurement.accuracy < rows["finetune"].measurement.accuracy - 5
    assert rows["reinit"].notes["retrain"] == "reinit"


def test_reinit_seeds_give_one_row_each_with_mean_and_std(digits, digits_baseline):
    results = _run(digits, digits_baseline, amount=0.7, retrain="reinit", seeds=[1, 2, 3], epochs=3)
    head = "prune-l1 epochs=3 amount=0.7 retrain=reinit seeds=[1,2,3]"
    assert [r.row.label for r in results] == [f"{head} (seed={s})" for s in (1, 2, 3)]
    accs = [r.row.measurement.accuracy for r in results]
    assert len(set(accs)) > 1  # different starting points
    for r in results:
        assert r.row.notes["accuracy_mean"] == round(statistics.mean(accs), 4)
        assert r.row.notes["accuracy_std"] == round(statistics.stdev(accs), 4)
        assert r.row.notes["starting_points"] == 3
    # one sparsity pattern (from the trained weights), different surviving values
    keep = _apply(digits, digits_baseline, amount=0.7, retrain="keep")
    patterns = [r.model.fc1.weight == 0 for r in results]
    for p in patterns:
        assert torch.equal(p, keep.model.fc1.weight == 0)
    assert not torch.equal(results[0].model.fc1.weight, results[1].model.fc1.weight)


def test_size_counts_survivors_plus_index_and_sparse_macs(digits, digits_baseline):
    survivors = {"conv1": 144 - 130, "conv2": 4608 - 4147, "fc1": 32768 - 29491, "fc2": 640 - 576}  # round(0.9 n)
    nz = sum(survivors.values())
    m = _run(digits, digits_baseline, amount=0.9, retrain="keep")[0].row.measurement
    assert m.n_params == nz + BIASES
    assert m.bytes == nz * (4 + 4) + BIASES * 4  # COO: fp32 value + int32 flat index per survivor
    assert "COO" in m.size_convention
    assert m.macs == 64 * 9 * 16 + 64 * 9 * 16 * 32 + 32768 + 640
    assert m.sparse_macs == CONV_POSITIONS * (survivors["conv1"] + survivors["conv2"]) + survivors["fc1"] + 64
    assert m.sparse_macs < m.macs

    bitmap = _run(digits, digits_baseline, amount=0.9, retrain="keep", sparse_format="bitmap")[0].row.measurement
    bitmap_bytes = sum(4 * survivors[n] + -(-WEIGHTS[n] // 8) for n in WEIGHTS) + BIASES * 4
    assert bitmap.bytes == bitmap_bytes
    assert "bitmap" in bitmap.size_convention


def test_coo_falls_back_to_dense_when_sparse_costs_more(digits, digits_baseline):
    m = _run(digits, digits_baseline, amount=0.3, retrain="keep")[0].row.measurement
    # at 30 % sparsity 8 bytes per survivor exceed 4 bytes per dense weight: every weight stays dense
    assert m.bytes == 4 * (sum(WEIGHTS.values()) + BIASES)


def test_params_are_checked():
    with pytest.raises(ValidationError):
        PruneL1Params(amount=1.0)
    with pytest.raises(ValidationError):
        PruneL1Params(colour="red")
    with pytest.raises(ValidationError, match="reinit"):
        PruneL1Params(retrain="finetune", seeds=[1, 2])
    with pytest.raises(ValidationError, match="distinct"):
        PruneL1Params(retrain="reinit", seeds=[1, 1])
    for name, field in PruneL1Params.model_fields.items():
        assert field.description, name


def test_unknown_layer_lists_the_valid_ones(digits, digits_baseline):
    with pytest.raises(ValueError, match="conv1.*conv2|conv2.*conv1"):
        _apply(digits, digits_baseline, layers=["conv9"])


def test_search_chooses_the_strongest_passing_amount(digits, digits_baseline):
    results = _run(digits, digits_baseline, search=True, retrain="keep", max_accuracy_drop=1.0)
    chosen = [r for r in results if not r.row.trial]
    assert len(chosen) == 1
    best = chosen[0]
    passing = [r for r in results if r.row.accuracy_drop is not None and r.row.accuracy_drop <= 1.0]
    assert best.row.accuracy_drop <= 1.0
    assert best.row.strength == max(r.row.strength for r in passing)
    assert any(r.row.accuracy_drop > 1.0 for r in results)  # the search did reach a failing amount
    assert len(results) > 2  # coarse steps then bisection
    assert best.model is not None and all(r.model is None for r in results if r is not best)
    assert best.row.params["amount"] == best.row.strength
