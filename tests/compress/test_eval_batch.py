"""Evaluation batch size is a speed knob only: the metrics do not depend on it."""

from __future__ import annotations

import pytest

from compress.training import EVAL_BATCH, evaluate


def test_evaluation_does_not_depend_on_the_batch_size(digits_baseline, digits) -> None:
    acc, loss = evaluate(digits_baseline.model, digits)
    for batch_size in (1, 7, EVAL_BATCH, 1024, len(digits.eval_x)):
        a, lo = evaluate(digits_baseline.model, digits, batch_size=batch_size)
        assert a == acc and lo == pytest.approx(loss, rel=1e-5)
    assert digits_baseline.measurement.accuracy == acc  # measure() uses the same default
