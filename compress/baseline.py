"""Build and train a base model, then measure it: the first row of every comparison table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from compress.architectures import get_architecture
from compress.datasets import DatasetSplit
from compress.layer_spec import LayerSpec, ModelSpec, SpecError, build_layers, build_model, output_shapes
from compress.measure import Measurement, measure
from compress.training import CancelCheck, Progress, TrainConfig, seed_everything, train


@dataclass
class Baseline:
    model: nn.Module
    spec: ModelSpec
    measurement: Measurement
    losses: list[float]


def resolve_spec(
    architecture: str | list[dict[str, Any]] | list[LayerSpec],
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
) -> ModelSpec:
    """A built-in architecture name or a JSON layer list -> a checked ModelSpec."""
    if isinstance(architecture, str):
        return get_architecture(architecture).spec(input_shape, num_classes)
    if input_shape is None:
        raise SpecError("a custom layer spec needs input_shape (C, H, W)")
    layers = [layer if isinstance(layer, LayerSpec) else LayerSpec.model_validate(layer) for layer in architecture]
    if num_classes is None:
        final = output_shapes(build_layers(layers), tuple(input_shape))[-1][1]
        if len(final) != 1:
            raise SpecError(f"the last layer '{layers[-1].name}' outputs shape {final}; expected (classes,)")
        num_classes = int(final[0])
    spec = ModelSpec(input_shape=input_shape, num_classes=num_classes, layers=layers)
    build_model(spec)
    return spec


def train_baseline(
    spec: ModelSpec,
    data: DatasetSplit,
    cfg: TrainConfig,
    progress: Progress | None = None,
    should_cancel: CancelCheck | None = None,
    latency_runs: int = 20,
) -> Baseline:
    """Seeded build + train + measure. Same seed, same data => identical weights and metrics."""
    data.check_fits(spec.input_shape, spec.num_classes)
    seed_everything(cfg.seed)
    model = build_model(spec)
    losses = train(model, data, cfg, progress, should_cancel)
    m = measure(model, spec, data, latency_runs=latency_runs)
    return Baseline(model, spec, m, losses)
