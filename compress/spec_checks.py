"""Argument rules for layer specs, checked before a layer is built.

PyTorch checks few constructor arguments: ``Conv2d(stride=0)`` is built and fails later with a
ZeroDivisionError while shapes are computed, ``Linear(out_features=0)`` is built and fails in
training, ``LeakyReLU(negative_slope=NaN)`` never fails at all. These rules refuse such values up
front, by argument name (a ``stride`` means the same in every layer type), with the layer type
only deciding how many spatial dimensions a tuple has. :func:`arg_problem` returns the first
problem as a sentence for the user ("argument 'stride' must be ... ; got 0"), or None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_SIZE = 2**31 - 1
"""Upper bound of every size argument (channels, features, kernel...): PyTorch's int32 index range."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Rule:
    """What one argument accepts: ``ok`` judges a scalar (or each element of a per-dimension tuple)."""

    ok: Callable[[Any], bool]
    what: str
    per_dim: bool = False
    """An int or a tuple with one value per spatial dimension of the layer (kernel_size, stride...)."""
    none_ok: bool = False
    none_element_ok: bool = False


def _size(v: Any) -> bool:
    return _is_int(v) and 1 <= v <= MAX_SIZE


def _count(v: Any) -> bool:
    return _is_int(v) and 0 <= v <= MAX_SIZE


def _fraction(v: Any) -> bool:
    return _is_number(v) and 0.0 <= v <= 1.0


def _positive(v: Any) -> bool:
    return _is_number(v) and v > 0


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


SIZE = f"an integer from 1 to {MAX_SIZE}"
RULES: dict[str, Rule] = {
    "in_channels": Rule(_size, SIZE),
    "out_channels": Rule(_size, SIZE),
    "in_features": Rule(_size, SIZE),
    "out_features": Rule(_size, SIZE),
    "num_features": Rule(_size, SIZE),
    "groups": Rule(_size, SIZE),
    "num_classes": Rule(_size, SIZE),
    "width_per_group": Rule(_size, SIZE),
    "round_nearest": Rule(_size, SIZE),
    "kernel_size": Rule(_size, SIZE, per_dim=True),
    "stride": Rule(_size, SIZE, per_dim=True),
    "dilation": Rule(_size, SIZE, per_dim=True),
    "padding": Rule(_count, f"an integer from 0 to {MAX_SIZE}", per_dim=True),
    "output_size": Rule(_size, SIZE, per_dim=True, none_element_ok=True),
    "divisor_override": Rule(_size, SIZE, none_ok=True),
    "p": Rule(_fraction, "a number from 0 to 1"),
    "dropout": Rule(_fraction, "a number from 0 to 1"),
    "momentum": Rule(_fraction, "a number from 0 to 1 (or null: a cumulative average)", none_ok=True),
    "eps": Rule(_positive, "a finite number > 0"),
    "width_mult": Rule(_positive, "a finite number > 0"),
    "negative_slope": Rule(_is_number, "a finite number"),
    "alpha": Rule(_is_number, "a finite number"),
    "dim": Rule(_is_int, "an integer", none_ok=True),
    "start_dim": Rule(_is_int, "an integer"),
    "end_dim": Rule(_is_int, "an integer"),
    "approximate": Rule(lambda v: v in ("none", "tanh"), "'none' or 'tanh'"),
    "return_indices": Rule(lambda v: v is False, "false (a layer in a sequence passes on one tensor, not indices)"),
    **{
        flag: Rule(_flag, "true or false")
        for flag in ("bias", "inplace", "ceil_mode", "affine", "track_running_stats", "count_include_pad")
    },
}

SPATIAL_DIMS: dict[str, int] = {
    "Conv1d": 1,
    "Conv2d": 2,
    "MaxPool2d": 2,
    "AvgPool2d": 2,
    "AdaptiveAvgPool2d": 2,
    "AdaptiveMaxPool2d": 2,
}
"""How many values a per-dimension tuple has, per layer type."""

_CONV_PADDING = ("same", "valid")
_POOL_STRIDE_NONE = ("MaxPool2d", "AvgPool2d")  # stride null = the kernel size


def show(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it in JSON (NaN and Infinity included), shortened."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def _check(rule: Rule, value: Any, dims: int | None) -> bool:
    if value is None:
        return rule.none_ok
    if rule.per_dim and dims is not None and isinstance(value, list | tuple):
        return len(value) == dims and all(
            (v is None and rule.none_element_ok) or (v is not None and rule.ok(v)) for v in value
        )
    return rule.ok(value)


def _expected(rule: Rule, dims: int | None, extra: str = "") -> str:
    text = rule.what
    if rule.per_dim and dims == 2:
        text += " (or a pair of them" + (", null keeping the input's size" if rule.none_element_ok else "") + ")"
    elif rule.per_dim and dims == 1:
        text += " (or a list of one)"
    if rule.none_ok:
        text += " or null"
    return text + extra


def arg_problem(layer_type: str, args: dict[str, Any]) -> str | None:
    """The first argument of ``args`` that ``layer_type`` cannot take as given, as a sentence; else None.

    Arguments without a rule are left to PyTorch (an unknown name is its TypeError); a float that is
    NaN or infinite is refused wherever it appears.
    """
    dims = SPATIAL_DIMS.get(layer_type)
    for name, value in args.items():
        rule = RULES.get(name)
        if name == "padding" and layer_type in ("Conv1d", "Conv2d") and value in _CONV_PADDING:
            continue
        if name == "stride" and layer_type in _POOL_STRIDE_NONE and value is None:
            continue
        if rule is not None and not _check(rule, value, dims):
            extra = ""
            if name == "padding" and layer_type in ("Conv1d", "Conv2d"):
                extra = ", or 'same' or 'valid'"
            elif name == "stride" and layer_type in _POOL_STRIDE_NONE:
                extra = ", or null (= kernel_size)"
            return f"argument '{name}' must be {_expected(rule, dims, extra)}; got {show(value)}"
        if rule is None and _non_finite(value):
            return f"argument '{name}' must be finite; got {show(value)}"
    return None
