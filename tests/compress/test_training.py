from __future__ import annotations

import pytest
import torch

from compress.baseline import resolve_spec, train_baseline
from compress.layer_spec import build_model
from compress.training import Cancelled, TrainConfig, TrainingError, train


def test_digits_cnn_reaches_90_percent(digits_baseline) -> None:
    assert digits_baseline.measurement.accuracy >= 90.0
    assert digits_baseline.losses[-1] < digits_baseline.losses[0]


def test_same_seed_gives_identical_weights_and_metrics(digits) -> None:
    spec = resolve_spec("digits-cnn", digits.input_shape, digits.num_classes)
    small = digits.subset(400, 200)
    a = train_baseline(spec, small, TrainConfig(epochs=2, seed=7), latency_runs=1)
    b = train_baseline(spec, small, TrainConfig(epochs=2, seed=7), latency_runs=1)
    c = train_baseline(spec, small, TrainConfig(epochs=2, seed=8), latency_runs=1)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.measurement.accuracy == b.measurement.accuracy and a.losses == b.losses
    assert not torch.equal(sa["conv1.weight"], c.model.state_dict()["conv1.weight"])


def test_progress_is_reported_and_cancellation_stops(digits) -> None:
    model = build_model(resolve_spec("digits-cnn"))
    seen: list[float] = []
    train(model, digits.subset(256, 64), TrainConfig(epochs=2, batch_size=32), progress=lambda f, s: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 2
    with pytest.raises(Cancelled):
        train(model, digits.subset(256, 64), TrainConfig(epochs=2, batch_size=32), should_cancel=lambda: True)


def test_nan_loss_stops_with_a_clear_error(digits) -> None:
    model = build_model(resolve_spec("digits-cnn"))
    with pytest.raises(TrainingError, match="loss became nan at epoch 1, step 1"):
        train(
            model,
            digits.subset(64, 16),
            TrainConfig(epochs=1),
            loss_fn=lambda logits, y, x: logits.sum() * float("nan"),
        )
