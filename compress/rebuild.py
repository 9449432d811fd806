"""Structural rebuild steps recorded in a ModelSpec's ``transforms``.

Some variants cannot be described by float layers alone (an int8-converted network, say). The
technique that makes them registers a rebuild function here under a kind name; loading a stored
model builds the float layers, then replays each transform, then loads the stored weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from compress.layer_spec import ModelSpec

Rebuild = Callable[[nn.Module, dict[str, Any]], nn.Module]
_TRANSFORMS: dict[str, Rebuild] = {}


def register_transform(kind: str) -> Callable[[Rebuild], Rebuild]:
    def wrap(fn: Rebuild) -> Rebuild:
        if kind in _TRANSFORMS:
            raise ValueError(f"transform '{kind}' is already registered")
        _TRANSFORMS[kind] = fn
        return fn

    return wrap


def apply_transforms(model: nn.Module, spec: ModelSpec) -> nn.Module:
    import compress.techniques  # noqa: F401  (registers the transforms)

    for step in spec.transforms:
        kind = step.get("kind", "")
        if kind not in _TRANSFORMS:
            raise ValueError(f"unknown transform '{kind}'; known: {', '.join(sorted(_TRANSFORMS))}")
        model = _TRANSFORMS[kind](model, step)
    return model
