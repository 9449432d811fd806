"""Shared fixtures: the offline digits data and a small trained digits-cnn, built once per session."""

from __future__ import annotations

import pytest
import torch

from compress.baseline import Baseline, resolve_spec, train_baseline
from compress.datasets import DatasetSplit, load_dataset
from compress.training import TrainConfig

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> DatasetSplit:
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="session")
def digits_baseline(digits: DatasetSplit) -> Baseline:
    """digits-cnn trained for 8 epochs (~2 s); treat as read-only (techniques copy it)."""
    spec = resolve_spec("digits-cnn", digits.input_shape, digits.num_classes)
    return train_baseline(spec, digits, TrainConfig(epochs=8, seed=0), latency_runs=3)
