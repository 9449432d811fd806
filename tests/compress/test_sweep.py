"""The default sweep is the lab's table: its rows, their order, and every job valid as posted."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from compress.runner import Step, validate_steps
from compress.sweep import default_sweep, lab_groups
from compress.techniques.quantize import DEFAULT_BACKEND


def _resolved(sweep: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out = []
    for item in sweep:
        tech, params = validate_steps([Step(**item)])[-1]  # every job is accepted as posted
        out.append((tech.name, params))
    return out


@pytest.mark.parametrize("quick", [True, False])
def test_default_sweep_is_the_labs_table_in_its_order(quick: bool) -> None:
    resolved = _resolved(default_sweep(quick=quick))
    order = [name for name, _ in resolved]
    lab = [t for t in lab_groups() if t != "baseline"]
    assert sorted(set(order), key=order.index) == lab  # grouped, in the lab's order

    narrow = [p for n, p in resolved if n == "narrow"]
    assert len(narrow) == 1 and narrow[0].epochs is None and narrow[0].lr is None  # the base model's training

    searches = [(n, p) for n, p in resolved if getattr(p, "search", False)]
    assert [n for n, _ in searches] == ["orthogonal", "separable"]
    assert all(p.stop_rule == "significance" and p.alpha == 0.05 for _, p in searches)

    l1 = [(p.scope, p.retrain, p.amount, p.seeds) for n, p in resolved if n == "prune-l1"]
    assert [(s, r) for s, r, _, _ in l1] == [
        ("layer", "keep"), ("layer", "finetune"), ("layer", "reinit"),
        ("global", "keep"), ("global", "finetune"), ("global", "reinit"),
    ]  # fmt: skip
    assert len({a for _, _, a, _ in l1}) == 1  # compared at one sparsity
    assert all(len(seeds) >= 3 for _, r, _, seeds in l1 if r == "reinit")  # mean ± std over seeds

    channels = [(p.mode, p.amount) for n, p in resolved if n == "prune-channels"]
    assert [m for m, _ in channels] == ["mask", "remove"] and len({a for _, a in channels}) == 1

    engines = [p.backend for n, p in resolved if n == "quantize-int8"]
    have = [e for e in ("x86", "fbgemm", "onednn", "qnnpack") if e in torch.backends.quantized.supported_engines]
    assert engines[0] == DEFAULT_BACKEND and sorted(engines) == sorted(have) and len(set(engines)) == len(engines)
    assert order[-1] == "quantize-dynamic"


def test_no_two_jobs_share_a_recipe() -> None:
    sweep = default_sweep()
    recipes = [(item["technique"], sorted(item["params"].items(), key=str)) for item in sweep]
    assert len({repr(r) for r in recipes}) == len(recipes)
