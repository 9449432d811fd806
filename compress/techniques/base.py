"""The technique contract: a params model, an ``apply`` function, and how to search it.

One technique = one module that builds a :class:`Technique` and registers it by name (a duplicate
name is an error). ``apply`` never mutates the model it is given: it deep-copies first. It returns
one :class:`Variant` (or several, e.g. one per seed) with the model, its ModelSpec (updated when the
structure changed) and, when storage differs from the dense default, its own SizeReport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from compress.datasets import DatasetSplit
from compress.layer_spec import ModelSpec, build_float
from compress.ops_count import OpsReport
from compress.registry import Registry
from compress.size import SizeReport
from compress.training import CancelCheck, Progress, TrainConfig


class TechniqueParams(BaseModel):
    """Fields every technique takes."""

    model_config = ConfigDict(extra="forbid")

    search: bool = Field(
        default=False,
        description="Search for the strongest reduction within max_accuracy_drop instead of applying once.",
    )
    max_accuracy_drop: float = Field(
        default=1.0, ge=0.0, le=100.0, description="Search budget: accuracy points below the base model."
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="Seed for every random step.")
    stop_rule: Literal["budget", "significance"] = Field(
        default="budget",
        description="How search decides a trial passes: 'budget' = its drop is within max_accuracy_drop; "
        "'significance' = also its drop is not significant (exact one-sided McNemar test against the base model "
        "on the same evaluation samples, at alpha): the strongest reduction before accuracy drops significantly.",
    )
    alpha: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="Significance level of the paired test of every row against the base model (drop_significant) "
        "and of stop_rule='significance'.",
    )


class LayerSelection(BaseModel):
    """Mixin: which layers a technique touches."""

    layers: list[str] | None = Field(default=None, description="Explicit layer names; when set, top_k is ignored.")
    top_k: int = Field(default=1, ge=1, le=1000, description="The k heaviest eligible layers (most weights).")


class FineTune(BaseModel):
    """Mixin: fine-tuning after the reduction (the same training loop as the base model)."""

    epochs: int = Field(default=1, ge=0, le=100, description="Fine-tuning epochs after the reduction.")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="Fine-tuning learning rate.")
    batch_size: int = Field(default=64, ge=1, le=4096, description="Fine-tuning batch size.")


@dataclass
class Context:
    """What a technique may use besides the model: data, callbacks, the untouched base model."""

    data: DatasetSplit
    base_model: nn.Module
    base_spec: ModelSpec
    base_accuracy: float | None = None
    progress: Progress | None = None
    should_cancel: CancelCheck | None = None
    calibration_samples: int = 1000
    base_training: TrainConfig | None = None
    """How the base model was trained (epochs, optimizer, lr, ...): techniques that train from scratch
    follow it unless their params say otherwise, so that they compete on equal terms."""

    def report(self, fraction: float, stage: str) -> None:
        if self.progress:
            self.progress(min(1.0, max(0.0, fraction)), stage)

    def cancelled(self) -> bool:
        return bool(self.should_cancel and self.should_cancel())

    def sub(self, start: float, end: float, prefix: str = "") -> Context:
        """A context whose progress 0..1 maps onto start..end of this one."""
        parent = self.progress

        def scaled(fraction: float, stage: str) -> None:
            if parent:
                parent(start + (end - start) * fraction, f"{prefix}{stage}")

        return Context(
            self.data,
            self.base_model,
            self.base_spec,
            self.base_accuracy,
            scaled,
            self.should_cancel,
            self.calibration_samples,
            self.base_training,
        )


@dataclass
class Variant:
    model: nn.Module
    spec: ModelSpec
    size: SizeReport | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    label_suffix: str = ""
    ops: OpsReport | None = None
    """Operations counted by the technique when the forward hooks cannot see its layers (a PT2E program)."""


@dataclass(frozen=True)
class SearchAxis:
    """How search widens the reduction.

    ``kind="layers"``: trials select 1, 2, ... of ``eligible(model, spec, params)`` (heaviest first)
    through the params' ``layers`` field. ``kind="ratio"``: trials vary the float field ``field``
    between ``low`` and ``high``; ``stronger="higher"`` when a larger value reduces more.
    """

    kind: Literal["layers", "ratio"]
    field: str = ""
    low: float = 0.0
    high: float = 1.0
    stronger: Literal["higher", "lower"] = "higher"
    coarse: tuple[float, ...] = ()
    bisect_steps: int = 3
    eligible: Callable[[nn.Module, ModelSpec, Any], list[str]] | None = None


Apply = Callable[[nn.Module, ModelSpec, Any, Context], "Variant | list[Variant]"]
CheckAgainst = Callable[[ModelSpec, Any], None]


class UnknownLayerError(ValueError):
    """Layer names a technique cannot use: ``names`` the refused ones, ``valid`` those it can take,
    ``field`` the params field that named them."""

    def __init__(self, message: str, names: list[str], valid: list[str], field: str = "layers") -> None:
        super().__init__(message)
        self.names = names
        self.valid = valid
        self.field = field


Rebuild = Callable[[nn.Module, dict[str, Any]], nn.Module]


@dataclass(frozen=True)
class Technique:
    """A registered technique.

    ``rebuild`` is for techniques whose result float layers cannot describe (int8 conversion): their
    ``apply`` appends a step ``{"kind": <technique name>, ...}`` to the spec's ``transforms``, and
    ``rebuild(float_model, step)`` replays that step's structure when a stored model is loaded
    (``compress.persistence``); the stored weights are loaded afterwards.
    """

    name: str
    description: str
    params_model: type[TechniqueParams]
    apply: Apply
    search_axis: SearchAxis | None = None
    check_params_against: CheckAgainst | None = None
    """Checks of the params against the model's structure alone (no weights, no data), e.g. that named
    layers exist and are eligible: run when a job is submitted; raises ValueError (UnknownLayerError)."""
    keeps_layer_names: bool = True
    """False when the technique renames or adds layers, so a later step's names cannot be checked up front."""
    rebuild: Rebuild | None = None

    def params_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()


TECHNIQUES: Registry[Technique] = Registry("technique")


def register_technique(technique: Technique) -> Technique:
    return TECHNIQUES.register(technique.name, technique)


def get_technique(name: str) -> Technique:
    return TECHNIQUES.get(name)


def list_techniques() -> list[Technique]:
    return TECHNIQUES.list()


def structure(spec: ModelSpec) -> nn.Module:
    """``spec``'s float layers on the meta device: names, types and shapes, no memory, no weights."""
    with torch.device("meta"):
        return build_float(spec)


def weighted_layers(model: nn.Module, types: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)) -> list[str]:
    """Names of the model's layers of ``types``, heaviest (most weight elements) first."""
    named = [(n, m) for n, m in model.named_modules() if n and isinstance(m, types)]
    named.sort(key=lambda nm: -int(getattr(nm[1], "weight").numel()))  # noqa: B009
    return [n for n, _ in named]


def select_layers(model: nn.Module, params: Any, eligible: list[str], what: str = "eligible layers") -> list[str]:
    """Resolve ``params.layers`` / ``params.top_k`` against ``eligible`` (heaviest first).

    An unknown or ineligible name is a ValueError listing the valid names.
    """
    if params.layers:
        bad = [n for n in params.layers if n not in eligible]
        if bad:
            raise UnknownLayerError(f"unknown layer(s) {bad}; {what}: {', '.join(eligible) or 'none'}", bad, eligible)
        return list(params.layers)
    return eligible[: params.top_k]
