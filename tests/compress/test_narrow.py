"""narrow: hidden widths scaled, classifier kept, trains from scratch (with or without distillation),
and a width search through the Runner chooses the narrowest passing trial."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress.architectures import get_architecture
from compress.baseline import Baseline
from compress.datasets import DatasetSplit
from compress.layer_spec import LayerSpec, ModelSpec, build_model, find_layer
from compress.measure import measure
from compress.runner import Runner, Step
from compress.techniques import Context, get_technique
from compress.techniques.narrow import NarrowParams, distillation_loss, narrow_spec
from compress.training import TrainConfig

FAST = {"epochs": 8, "lr": 3e-3}  # ~0.3 s per narrow digits-cnn on one thread


def _ctx(digits: DatasetSplit, base: Baseline) -> Context:
    return Context(digits, base.model, base.spec, base.measurement.accuracy)


def _arg(spec: ModelSpec, name: str, key: str) -> int:
    return int(find_layer(spec.layers, name).args[key])


def test_hidden_widths_scaled_classifier_kept(digits_baseline: Baseline) -> None:
    spec = digits_baseline.spec
    half, changes = narrow_spec(spec, 0.5)
    assert changes == {"conv1": (16, 8), "conv2": (32, 16), "fc1": (64, 32)}
    assert _arg(half, "conv2", "in_channels") == 8
    assert _arg(half, "fc1", "in_features") == 16 * 4 * 4  # 16 channels after the 2x2 pool of 8x8
    assert (_arg(half, "fc2", "in_features"), _arg(half, "fc2", "out_features")) == (32, 10)
    model = build_model(half)
    # conv1 8*1*9 + 8 = 80; conv2 16*8*9 + 16 = 1168; fc1 256*32 + 32 = 8224; fc2 32*10 + 10 = 330.
    assert sum(p.numel() for p in model.parameters()) == 80 + 1168 + 8224 + 330 == 9802
    assert spec.layers[0].args["out_channels"] == 16  # the input spec is not modified

    _, tenth = narrow_spec(spec, 0.1)  # 1.6 -> 2, 3.2 -> 3, 6.4 -> 6
    assert tenth == {"conv1": (16, 2), "conv2": (32, 3), "fc1": (64, 6)}
    _, tiny = narrow_spec(spec, 0.01)  # never fewer than one channel
    assert tiny == {"conv1": (16, 1), "conv2": (32, 1), "fc1": (64, 1)}
    full, same = narrow_spec(spec, 1.0)
    assert full == spec and all(a == b for a, b in same.values())


def test_batchnorm_and_flatten_refitted() -> None:
    spec = get_architecture("mnist-cnn").spec()
    narrowed, changes = narrow_spec(spec, 0.25)
    assert changes == {"conv1": (32, 8), "conv2": (64, 16), "conv3": (128, 32), "fc1": (256, 64)}
    assert _arg(narrowed, "bn2", "num_features") == 16
    assert _arg(narrowed, "conv3", "in_channels") == 16
    assert _arg(narrowed, "fc1", "in_features") == 32 * 7 * 7
    assert _arg(narrowed, "fc2", "out_features") == 10
    with torch.no_grad():
        assert build_model(narrowed)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_torchvision_spec_is_refused() -> None:
    spec = ModelSpec(
        input_shape=(3, 32, 32),
        num_classes=10,
        layers=[LayerSpec(name="net", type="tv.resnet18", args={"num_classes": 10})],
    )
    with pytest.raises(ValueError, match=r"'net' is a whole torchvision network \(tv.resnet18\)"):
        narrow_spec(spec, 0.5)


def test_trains_from_scratch(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("narrow")
    variant = tech.apply(
        digits_baseline.model,
        digits_baseline.spec,
        NarrowParams(width=0.5, seed=0, **FAST),
        _ctx(digits, digits_baseline),
    )
    m = measure(variant.model, variant.spec, digits, latency=False)
    assert m.n_params == 9802
    assert m.accuracy is not None and m.accuracy > 93.0  # 10 classes: chance is 10 %
    assert variant.notes["channels"] == {"conv1": [16, 8], "conv2": [32, 16], "fc1": [64, 32]}
    assert variant.notes["final_train_loss"] < 0.2
    assert isinstance(variant.model.get_submodule("fc2"), nn.Linear)
    assert variant.model.get_submodule("fc2").out_features == 10


def test_distillation_loss_formula() -> None:
    torch.manual_seed(0)
    teacher = nn.Linear(5, 4)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 0, 1])
    student = torch.randn(6, 4)
    t_logits = teacher(x).detach()
    temp, alpha = 3.0, 0.7
    p_t = F.softmax(t_logits / temp, dim=1)
    kl = (p_t * (p_t.log() - F.log_softmax(student / temp, dim=1))).sum(dim=1).mean()
    expected = alpha * temp**2 * kl + (1 - alpha) * F.cross_entropy(student, y)
    loss = distillation_loss(teacher, temp, alpha)
    assert torch.allclose(loss(student, y, x), expected, atol=1e-6)
    assert torch.allclose(distillation_loss(teacher, temp, 0.0)(student, y, x), F.cross_entropy(student, y))
    # A student that matches the teacher pays only the hard-label part.
    assert torch.allclose(loss(t_logits, y, x), (1 - alpha) * F.cross_entropy(t_logits, y), atol=1e-6)


def test_distillation_path_runs(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("narrow")
    ctx = _ctx(digits, digits_baseline)
    params = {"width": 0.5, "seed": 0, "epochs": 4, "lr": 3e-3}
    plain = tech.apply(digits_baseline.model, digits_baseline.spec, NarrowParams(**params), ctx)
    kd = tech.apply(
        digits_baseline.model,
        digits_baseline.spec,
        NarrowParams(**params, distill=True, temperature=2.0, alpha=0.5),
        ctx,
    )
    assert kd.notes["distillation"] == {"temperature": 2.0, "alpha": 0.5, "teacher": "base model"}
    assert "distilled" in kd.label_suffix
    # Same seed and init: only the loss differs, so the trained weights differ.
    assert not torch.allclose(kd.model.get_submodule("fc2").weight, plain.model.get_submodule("fc2").weight)
    m = measure(kd.model, kd.spec, digits, latency=False)
    assert m.accuracy is not None and m.accuracy > 85.0
    assert all(p.requires_grad for p in digits_baseline.model.parameters())  # the teacher was a frozen copy


def test_width_search_chooses_narrowest_passing(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    base = digits_baseline
    runner = Runner(_ctx(digits, base), base.measurement, latency_runs=2)
    budget = 1.0
    step = Step(technique="narrow", params={"search": True, "max_accuracy_drop": budget, "seed": 0, **FAST})
    rows = [r.row for r in runner.run([step], base.model, base.spec)]
    # Rows store params without defaults (width 0.5 is the default); strength is -width on this axis.
    widths = [-(r.strength or 0.0) for r in rows]
    assert [r.params.get("width", 0.5) for r in rows] == widths
    passing = [r for r in rows if r.accuracy_drop is not None and r.accuracy_drop <= budget]
    failing = [r for r in rows if r not in passing]
    chosen = [r for r in rows if not r.trial]
    # Coarse steps from wide to narrow until the first failure, then bisection below the last pass.
    assert widths[:2] == [0.75, 0.5]
    assert failing, "the budget should stop the coarse steps somewhere"
    assert len(passing) >= 3
    assert len(chosen) == 1
    best = chosen[0]
    assert best.accuracy_drop is not None and best.accuracy_drop <= budget
    width = {id(r): -(r.strength or 0.0) for r in rows}
    assert width[id(best)] == min(width[id(r)] for r in passing)
    assert width[id(best)] < 0.5  # bisection found a narrower passing width than the coarse steps
    assert all(best.measurement.n_params <= r.measurement.n_params for r in passing)
    assert all(width[id(r)] < width[id(best)] for r in failing)


def test_training_settings_follow_the_base_model_unless_given() -> None:
    from compress.techniques.narrow import FALLBACK_TRAINING, training_config

    base = TrainConfig(epochs=10, lr=3e-3, batch_size=32, optimizer="sgd", momentum=0.8, weight_decay=1e-4, seed=7)
    cfg, from_base = training_config(NarrowParams(seed=3), base)
    assert cfg == base.model_copy(update={"seed": 3})  # narrow's own seed, every setting of the base model
    assert from_base == ["epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay"]
    cfg, from_base = training_config(NarrowParams(epochs=3, optimizer="adam"), base)
    assert (cfg.epochs, cfg.optimizer, cfg.lr, cfg.batch_size) == (3, "adam", 3e-3, 32)
    assert "epochs" not in from_base and "optimizer" not in from_base and "lr" in from_base
    # unknown base settings, or a base that trained nothing (uploaded weights): narrow's own defaults
    for unknown in (None, TrainConfig(epochs=0, lr=0.5)):
        cfg, from_base = training_config(NarrowParams(), unknown)
        assert cfg == FALLBACK_TRAINING.model_copy(update={"seed": 0}) and from_base == []
        assert (cfg.epochs, cfg.lr, cfg.batch_size, cfg.optimizer) == (5, 1e-3, 64, "adam")  # the former defaults


def test_narrow_trains_with_the_base_models_settings(digits: DatasetSplit, digits_baseline: Baseline) -> None:
    tech = get_technique("narrow")
    base_training = TrainConfig(epochs=3, lr=3e-3, batch_size=32, optimizer="adamw", weight_decay=1e-3)
    ctx = Context(digits, digits_baseline.model, digits_baseline.spec, base_training=base_training)
    fair = tech.apply(digits_baseline.model, digits_baseline.spec, NarrowParams(width=0.5, seed=0), ctx)
    assert fair.notes["trained_from_scratch_epochs"] == 3
    assert fair.notes["training"] == {
        "epochs": 3,
        "lr": 3e-3,
        "batch_size": 32,
        "optimizer": "adamw",
        "momentum": 0.9,
        "weight_decay": 1e-3,
    }
    # the same network as when every setting is spelled out in the params (weight decay is the base's)
    spelled = NarrowParams(width=0.5, seed=0, epochs=3, lr=3e-3, batch_size=32, optimizer="adamw")
    explicit = tech.apply(digits_baseline.model, digits_baseline.spec, spelled, ctx)
    for a, b in zip(fair.model.parameters(), explicit.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # params override the base model's settings
    short = tech.apply(digits_baseline.model, digits_baseline.spec, NarrowParams(width=0.5, epochs=1), ctx)
    assert short.notes["trained_from_scratch_epochs"] == 1 and "epochs" not in short.notes["training_from_base_model"]
    # without the base model's settings: the former defaults (5 epochs)
    alone = tech.apply(
        digits_baseline.model, digits_baseline.spec, NarrowParams(width=0.5), _ctx(digits, digits_baseline)
    )
    assert alone.notes["trained_from_scratch_epochs"] == 5 and alone.notes["training_from_base_model"] == []
    # a sub-context (chains, search trials) passes the settings on
    assert ctx.sub(0.0, 0.5).base_training == base_training
