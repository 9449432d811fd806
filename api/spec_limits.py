"""How big a requested base model would be, found before anything is allocated.

A layer spec is resolved and measured on PyTorch's ``meta`` device: layers get shapes but no storage,
so a spec asking for a 10¹²-parameter Linear costs nothing to refuse. Only a spec within the limits
(``NETREDUCE_MAX_SPEC_LAYERS``, ``_MAX_MODEL_PARAMS``, ``_MAX_ACTIVATION_ELEMENTS``) is built for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compress.baseline import resolve_spec
from compress.layer_spec import LayerSpec, ModelSpec, build_float
from store.settings import Settings


class SpecTooLarge(ValueError):
    """The spec is valid but larger than this server accepts; the message names the limit."""


@dataclass(frozen=True)
class Footprint:
    params: int
    largest_layer: str
    largest_layer_params: int
    largest_output: str
    largest_output_elements: int
    """Elements of the largest layer output for one sample."""


def count_layers(layers: list[Any]) -> int:
    """Layers in a spec, nested ``Sequential`` children included (raw dicts or LayerSpec)."""
    total = 0
    for layer in layers:
        total += 1
        children = layer.get("layers") if isinstance(layer, dict) else getattr(layer, "layers", None)
        if isinstance(children, list):
            total += count_layers(children)
    return total


def resolve_on_meta(
    architecture: str | list[dict[str, Any]] | list[LayerSpec],
    input_shape: tuple[int, int, int] | None,
    num_classes: int | None,
) -> ModelSpec:
    """``compress.baseline.resolve_spec`` with every tensor on the meta device (same checks, no memory)."""
    with torch.device("meta"):
        return resolve_spec(architecture, input_shape, num_classes)


def footprint(spec: ModelSpec) -> Footprint:
    """Parameters and the largest per-sample activation of ``spec``'s float network, on the meta device."""
    outputs: dict[str, int] = {}

    def record(name: str) -> Any:
        def hook(_: nn.Module, __: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                outputs[name] = max(outputs.get(name, 0), out[0].numel() if out.dim() else 1)

        return hook

    with torch.device("meta"):
        model = build_float(spec)
        leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
        handles = [m.register_forward_hook(record(n)) for n, m in leaves]
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, *spec.input_shape))
        finally:
            for h in handles:
                h.remove()
    outputs["(input)"] = max(outputs.get("(input)", 0), int(torch.Size(spec.input_shape).numel()))
    per_layer = {n: sum(p.numel() for p in m.parameters(recurse=False)) for n, m in leaves}
    big_layer = max(per_layer, key=per_layer.__getitem__, default="")
    big_out = max(outputs, key=outputs.__getitem__, default="")
    return Footprint(
        params=sum(p.numel() for p in model.parameters()),
        largest_layer=big_layer,
        largest_layer_params=per_layer.get(big_layer, 0),
        largest_output=big_out,
        largest_output_elements=outputs.get(big_out, 0),
    )


def check_layer_count(layers: list[Any], settings: Settings) -> None:
    n = count_layers(layers)
    if n > settings.max_spec_layers:
        raise SpecTooLarge(
            f"the layer spec has {n} layers (nested ones included); at most {settings.max_spec_layers} "
            "are accepted (NETREDUCE_MAX_SPEC_LAYERS)"
        )


def check_footprint(spec: ModelSpec, settings: Settings) -> Footprint:
    fp = footprint(spec)
    if fp.params > settings.max_model_params:
        raise SpecTooLarge(
            f"the model would have {fp.params:,} parameters (largest layer '{fp.largest_layer}': "
            f"{fp.largest_layer_params:,}); at most {settings.max_model_params:,} are accepted "
            "(NETREDUCE_MAX_MODEL_PARAMS)"
        )
    if fp.largest_output_elements > settings.max_activation_elements:
        raise SpecTooLarge(
            f"layer '{fp.largest_output}' would output {fp.largest_output_elements:,} values per sample; at most "
            f"{settings.max_activation_elements:,} are accepted (NETREDUCE_MAX_ACTIVATION_ELEMENTS)"
        )
    return fp
