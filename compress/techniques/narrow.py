"""A narrower network: the same architecture with every hidden layer's width scaled, trained from scratch.

Every Conv1d/Conv2d/Linear layer of the spec except the last one (the classifier, whose outputs are
the classes) gets ``max(1, round(width * out))`` output channels/units; the input sizes of the
layers after it (in_channels, in_features, BatchNorm num_features) are refitted with
``refit_inputs``. Depthwise convs (``groups == in_channels``) follow their input; other grouped
convs are refused. The incoming model's weights are not used: the narrow model is built from the
new spec and trained from scratch with the shared loop (seeded with ``params.seed``) and, unless the
params say otherwise, the base model's training settings (``ctx.base_training``: epochs, optimizer,
learning rate, batch size, momentum, weight decay; a narrower net trained for fewer epochs than its
base is not a fair comparison), optionally
with knowledge distillation from ``ctx.base_model`` (Hinton et al. 2015):

    loss = alpha · T² · KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − alpha) · CE(student, labels)

(the KL of the student's tempered distribution from the teacher's, as in Hinton's paper and most
implementations; T² keeps the soft-target gradients on the scale of the hard-label ones).
A whole torchvision network (``ModelSpec.network``) is narrowed through its family's own width
multiplier (MobileNet's ``width_mult``, which also rounds channels to multiples of 8); families without
one are refused, as are ``tv.*`` layers inside a layer list.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from compress.layer_spec import LayerSpec, ModelSpec, build_model, refit_inputs
from compress.techniques.base import (
    Context,
    SearchAxis,
    Technique,
    TechniqueParams,
    Variant,
    register_technique,
)
from compress.training import LossFn, TrainConfig, predict_logits, seed_everything, train

WIDTH_ARGS = {"Conv1d": "out_channels", "Conv2d": "out_channels", "Linear": "out_features"}
NETWORK_WIDTH_ARGS = {"mobilenet_v2": "width_mult", "mobilenet_v3_small": "width_mult"}
"""torchvision networks that have a width multiplier, and its builder argument."""


class NarrowParams(TechniqueParams):
    """How much narrower, how long to train from scratch, and whether to distil from the base model."""

    width: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Factor on every hidden layer's channels/units (at least 1 kept)."
    )
    epochs: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Training epochs from scratch; null = the base model's (5 when unknown or 0, e.g. uploaded).",
    )
    lr: float | None = Field(
        default=None, gt=0.0, le=1.0, description="Training learning rate; null = the base model's (1e-3 when unknown)."
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=4096, description="Training batch size; null = the base model's (64 when unknown)."
    )
    optimizer: Literal["adam", "sgd", "adamw"] | None = Field(
        default=None, description="Optimizer; null = the base model's (adam when unknown)."
    )
    distill: bool = Field(default=False, description="Train with knowledge distillation from the base model.")
    temperature: float = Field(
        default=4.0, gt=0.0, le=100.0, description="Distillation temperature T (softens both distributions)."
    )
    alpha: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the distillation term; 1 - alpha weighs cross-entropy."
    )


def _walk(layers: list[LayerSpec], prefix: str = "") -> list[tuple[str, LayerSpec]]:
    out: list[tuple[str, LayerSpec]] = []
    for layer in layers:
        path = f"{prefix}{layer.name}"
        out.append((path, layer))
        if layer.type == "Sequential":
            out.extend(_walk(layer.layers or [], f"{path}."))
    return out


FALLBACK_TRAINING = TrainConfig(epochs=5, lr=1e-3, batch_size=64, optimizer="adam")
"""narrow's settings when the base model's are unknown (no ``ctx.base_training``) or trained nothing
(0 epochs: uploaded weights)."""


def training_config(params: NarrowParams, base: TrainConfig | None) -> tuple[TrainConfig, list[str]]:
    """The TrainConfig narrow trains with: each field the params set, else the base model's, else
    :data:`FALLBACK_TRAINING`'s; also which fields came from the base model."""
    source = base if base is not None and base.epochs > 0 else FALLBACK_TRAINING
    from_base: list[str] = []
    values: dict[str, Any] = {}
    for name in ("epochs", "lr", "batch_size", "optimizer"):
        given = getattr(params, name)
        values[name] = given if given is not None else getattr(source, name)
        if given is None and source is base:
            from_base.append(name)
    for name in ("momentum", "weight_decay"):
        values[name] = getattr(source, name)
        if source is base:
            from_base.append(name)
    return TrainConfig(**values, seed=params.seed), from_base


def scaled_width(channels: int, width: float) -> int:
    """``round(width * channels)`` (halves up), at least 1."""
    return max(1, int(channels * width + 0.5))


def narrow_spec(spec: ModelSpec, width: float) -> tuple[ModelSpec, dict[str, tuple[int, int]]]:
    """The spec with every hidden layer's width scaled; also ``{layer: (old, new)}`` for the scaled ones."""
    if spec.transforms:
        raise ValueError(
            "narrow trains a float network from scratch, but this spec has structural transforms "
            f"({len(spec.transforms)}, e.g. int8 conversion); apply narrow before quantization"
        )
    if spec.network is not None:
        return _narrow_network(spec, width)
    layers = [layer.model_copy(deep=True) for layer in spec.layers]
    walked = _walk(layers)
    torchvision = [(path, layer.type) for path, layer in walked if layer.type.startswith("tv.")]
    if torchvision:
        path, kind = torchvision[0]
        raise ValueError(
            f"narrow needs a layer-list spec, but layer '{path}' is a whole torchvision network ({kind}) with no "
            "per-layer widths to scale; layer-list architectures (digits-cnn, mnist-cnn, lenet5) can be narrowed"
        )
    weighted = [(path, layer) for path, layer in walked if layer.type in WIDTH_ARGS]
    if len(weighted) < 2:
        raise ValueError("narrow needs at least one hidden Conv/Linear layer before the classifier")
    changes: dict[str, tuple[int, int]] = {}
    for path, layer in weighted[:-1]:
        groups = int(layer.args.get("groups", 1))
        if groups != 1:
            if layer.args.get("in_channels") == groups:
                continue  # depthwise: refit_inputs keeps it matched to its input
            raise ValueError(f"narrow cannot scale grouped conv '{path}' (groups={groups}); only groups=1 or depthwise")
        key = WIDTH_ARGS[layer.type]
        old = int(layer.args[key])
        new = scaled_width(old, width)
        layer.args[key] = new
        changes[path] = (old, new)
    narrowed = spec.model_copy(update={"layers": refit_inputs(layers, spec.input_shape)})
    build_model(narrowed)  # shape check: still (num_classes,) out
    return narrowed, changes


def check_narrowable(spec: ModelSpec, params: Any = None) -> None:
    """Refuse, before a job runs, a whole network without a width multiplier."""
    if spec.network is not None and not spec.transforms and spec.network.name not in NETWORK_WIDTH_ARGS:
        raise ValueError(
            f"narrow: torchvision's {spec.network.name} has no width multiplier; networks with one: "
            f"{', '.join(NETWORK_WIDTH_ARGS)} (layer-list architectures can be narrowed too)"
        )


def _narrow_network(spec: ModelSpec, width: float) -> tuple[ModelSpec, dict[str, tuple[int, int]]]:
    assert spec.network is not None
    check_narrowable(spec)
    key = NETWORK_WIDTH_ARGS[spec.network.name]
    args = {**spec.network.args, key: float(spec.network.args.get(key, 1.0)) * width}
    narrowed = spec.model_copy(update={"network": spec.network.model_copy(update={"args": args})})
    with torch.device("meta"):
        before, after = _widths(build_model(spec)), _widths(build_model(narrowed))
    changes = {n: (before[n], after[n]) for n in before if n in after and before[n] != after[n]}
    return narrowed, changes


def _widths(model: nn.Module) -> dict[str, int]:
    return {n: int(m.weight.shape[0]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def distillation_loss(teacher: nn.Module, temperature: float, alpha: float) -> LossFn:
    """``alpha·T²·KL(p_teacher^T ‖ p_student^T) + (1 − alpha)·CE`` with the teacher frozen in eval mode."""

    def loss(logits: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            soft_targets = F.log_softmax(teacher(inputs) / temperature, dim=1)
        soft = F.kl_div(
            F.log_softmax(logits / temperature, dim=1), soft_targets, reduction="batchmean", log_target=True
        )
        return alpha * temperature**2 * soft + (1.0 - alpha) * F.cross_entropy(logits, targets)

    return loss


def _teacher(ctx: Context, num_classes: int) -> nn.Module:
    teacher = copy.deepcopy(ctx.base_model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    outputs = predict_logits(teacher, ctx.data.train_x[:2]).shape[1]
    if outputs != num_classes:
        raise ValueError(f"distillation needs a teacher with {num_classes} outputs; the base model has {outputs}")
    return teacher


def apply(model: nn.Module, spec: ModelSpec, params: NarrowParams, ctx: Context) -> Variant:
    """Train the narrowed architecture from scratch (``model``'s weights are not used)."""
    new_spec, changes = narrow_spec(spec, params.width)
    ctx.report(0.0, f"width {params.width}: " + ", ".join(f"{n} {a}→{b}" for n, (a, b) in changes.items()))
    loss_fn = _teacher_loss(ctx, new_spec, params) if params.distill else None
    seed_everything(params.seed)
    new = build_model(new_spec)
    cfg, from_base = training_config(params, ctx.base_training)
    losses = train(new, ctx.data, cfg, ctx.sub(0.02, 0.98, "train: ").progress, ctx.should_cancel, loss_fn)
    new.eval()
    notes: dict[str, Any] = {
        "width": params.width,
        "channels": {name: [old, n] for name, (old, n) in changes.items()},
        "trained_from_scratch_epochs": cfg.epochs,
        "training": cfg.model_dump(mode="json", exclude={"seed"}),
        "training_from_base_model": from_base,
        "final_train_loss": round(losses[-1], 6),
    }
    suffix = f"width={params.width}"
    if params.distill:
        notes["distillation"] = {"temperature": params.temperature, "alpha": params.alpha, "teacher": "base model"}
        suffix += f", distilled T={params.temperature} α={params.alpha}"
    ctx.report(1.0, "trained")
    return Variant(new, new_spec, None, notes, label_suffix=suffix)


def _teacher_loss(ctx: Context, spec: ModelSpec, params: NarrowParams) -> LossFn:
    return distillation_loss(_teacher(ctx, spec.num_classes), params.temperature, params.alpha)


TECHNIQUE = register_technique(
    Technique(
        name="narrow",
        description="The same architecture with every hidden layer's channels/units scaled by width, trained "
        "from scratch, optionally distilled from the base model.",
        params_model=NarrowParams,
        apply=apply,
        search_axis=SearchAxis(
            kind="ratio",
            field="width",
            low=0.0,
            high=1.0,
            stronger="lower",
            coarse=(0.75, 0.5, 0.25, 0.125),
            bisect_steps=3,
        ),
        check_params_against=check_narrowable,
    )
)
