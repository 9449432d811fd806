"""The default sweep: valid jobs, searches stop on significance, fair narrow, default int8 engine."""

from __future__ import annotations

import pytest

from compress.runner import Step, validate_steps
from compress.sweep import default_sweep
from compress.techniques.quantize import DEFAULT_BACKEND


@pytest.mark.parametrize("quick", [True, False])
def test_default_sweep(quick: bool) -> None:
    sweep = default_sweep(quick=quick)
    resolved = [validate_steps([Step(**item)])[-1] for item in sweep]  # every job is accepted as posted
    searches = [params for _, params in resolved if params.search]
    assert len(searches) == 4 and all(p.stop_rule == "significance" and p.alpha == 0.05 for p in searches)
    narrow = next(item["params"] for item in sweep if item["technique"] == "narrow")
    assert not {"epochs", "lr", "batch_size", "optimizer"} & set(narrow)  # the base model's settings
    int8 = [params.backend for tech, params in resolved if tech.name == "quantize-int8"]  # type: ignore[attr-defined]
    assert int8[0] == DEFAULT_BACKEND and next(i for i in sweep if i["technique"] == "quantize-int8")["params"] == {}
