"""The ratio search on a technique whose accuracy is not monotonic in its ratio (a stub measurement)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import Field

from compress.measure import Measurement
from compress.runner import Runner, Step
from compress.techniques.base import TECHNIQUES, Context, SearchAxis, Technique, TechniqueParams, Variant

BASE_ACCURACY = 90.0
# drop 0.5 at 0.25, 2.0 at 0.5 (fails), 0.8 at 0.75 (passes again), over budget above 0.8
ACCURACY = {0.25: 89.5, 0.5: 88.0, 0.75: 89.2}


class RatioParams(TechniqueParams):
    amount: float = Field(default=0.5, ge=0.0, le=1.0, description="How much to reduce.")


def _apply(model, spec, params: RatioParams, ctx: Context) -> Variant:  # noqa: ANN001
    return Variant(model, spec, notes={"amount": params.amount})


@pytest.fixture
def ratio_technique() -> Iterator[str]:
    name = "test-ratio-search"
    axis = SearchAxis(kind="ratio", field="amount", low=0.0, high=1.0, coarse=(0.25, 0.5, 0.75), bisect_steps=3)
    TECHNIQUES.register(name, Technique(name, "stub", RatioParams, _apply, axis))
    yield name
    del TECHNIQUES._items[name]


class StubRunner(Runner):
    def _measure(self, variant: Variant) -> Measurement:
        amount = variant.notes["amount"]
        accuracy = ACCURACY.get(amount, 89.5 if amount < 0.8 else 80.0)
        size = int(1000 * (1 - amount))
        return Measurement(
            n_params=size,
            bytes=4 * size,
            nonzero_params=size,
            macs=1,
            activation_ops=0,
            ops=1,
            flops=2,
            sparse_macs=1,
            accuracy=accuracy,
        )


def test_search_goes_past_a_failing_coarse_step_and_picks_the_strongest_passing(
    ratio_technique: str, digits, digits_baseline
) -> None:
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, base_accuracy=BASE_ACCURACY)
    rows = StubRunner(ctx).run(
        [Step(technique=ratio_technique, params={"search": True, "max_accuracy_drop": 1.0})],
        digits_baseline.model,
        digits_baseline.spec,
    )
    tried = [r.row.params["amount"] for r in rows]
    assert tried[:3] == [0.25, 0.5, 0.75]  # every coarse step, although 0.5 failed
    assert tried[3:] == [0.875, 0.8125, 0.7812]  # bisection between 0.75 (pass) and 1.0 (the axis end)
    chosen = [r.row for r in rows if not r.row.trial]
    assert len(chosen) == 1
    passing = [r.row for r in rows if r.row.accuracy_drop is not None and r.row.accuracy_drop <= 1.0]
    assert chosen[0].params["amount"] == max(p.params["amount"] for p in passing) == 0.7812
    assert chosen[0].accuracy_drop == pytest.approx(0.5)
