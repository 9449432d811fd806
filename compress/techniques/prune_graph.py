"""Channel pruning of any traced network through Torch-Pruning's DependencyGraph.

Torch-Pruning traces the network once and groups every tensor coupled to a layer's output channels:
the BatchNorm after it, the next layers' inputs, the other branch of a residual add, the channels of
a depthwise convolution, a squeeze-excitation block's gates. A group's channels are ranked by their
L2 norm over the whole group (``GroupMagnitudeImportance(p=2)``) and removed together, so the network
stays consistent. The classifier (the last Linear layer) never loses outputs.

``remove`` keeps the smaller network; its new shapes are recorded as a spec transform
(``{"kind": "prune-channels", "modules": {path: {"tensors": ..., "attrs": ...}}}``) that
:func:`rebuild` replays on the freshly built network before the stored weights are loaded.
``mask`` keeps the shapes and zeroes the same channels (weight and bias of every producing layer
of the group, the masks kept in force while fine-tuning).
"""

from __future__ import annotations

from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune
from torch_pruning._helpers import to_plain_idxs

from compress.layer_spec import ModelSpec

_ATTRS = ("in_channels", "out_channels", "groups", "in_features", "out_features", "num_features")
_OUT_HANDLERS = {
    tp.prune_conv_out_channels: "conv",
    tp.prune_depthwise_conv_out_channels: "conv",
    tp.prune_linear_out_channels: "linear",
    tp.prune_batchnorm_out_channels: "norm",
}


def needs_graph(spec: ModelSpec) -> bool:
    """True for networks that are not a plain layer list (torchvision networks, whole or as a layer)."""

    def whole(layers: list[Any]) -> bool:
        return any(ls.type.startswith("tv.") or whole(ls.layers or []) for ls in layers)

    return spec.network is not None or whole(spec.layers)


def classifier(model: nn.Module) -> str:
    """The module path of the last Linear layer (its outputs are the classes)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("prune-channels: this network has no Linear classifier to protect")
    return names[-1]


def prunable(model: nn.Module) -> list[str]:
    """Conv/Linear layers whose output channels may be pruned (all but the classifier), in module order."""
    last = classifier(model)
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear) and n != last]


def _pruner(model: nn.Module, spec: ModelSpec, amount: float | dict[str, float]) -> tp.pruner.BasePruner:
    ratios = amount if isinstance(amount, dict) else {}
    return tp.pruner.BasePruner(
        model,
        torch.zeros(1, *spec.input_shape),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=0.0 if isinstance(amount, dict) else amount,
        pruning_ratio_dict={model.get_submodule(n): r for n, r in ratios.items()},
        ignored_layers=[model.get_submodule(classifier(model))],
    )


def _outputs(model: nn.Module) -> dict[str, int]:
    return {n: int(m.weight.shape[0]) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}


def mask_channels(model: nn.Module, spec: ModelSpec, amount: float | dict[str, float]) -> dict[str, str]:
    """Zero the channels the pruner would remove, masks kept in force (``prune.custom_from_mask``).
    Returns ``{layer: "outputs → kept"}`` for the layers that lost channels."""
    model.eval()
    names = {m: n for n, m in model.named_modules()}
    masks: dict[str, torch.Tensor] = {}
    for group in _pruner(model, spec, amount).step(interactive=True):
        for dep, idxs in group:
            if dep.handler not in _OUT_HANDLERS:
                continue
            module = dep.target.module
            mask = masks.setdefault(names[module], torch.ones(module.weight.shape[0]))
            mask[[int(i) for i in to_plain_idxs(idxs)]] = 0.0
    changes: dict[str, str] = {}
    for name, mask in masks.items():
        module = model.get_submodule(name)
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        prune.custom_from_mask(module, "weight", mask.view((-1,) + (1,) * (weight.dim() - 1)).expand_as(weight))
        if module.bias is not None:
            prune.custom_from_mask(module, "bias", mask)
        if isinstance(module, nn.Conv2d | nn.Linear):
            changes[name] = f"{mask.numel()} → {int(mask.sum())}"
    return changes


def remove_channels(
    model: nn.Module, spec: ModelSpec, amount: float | dict[str, float]
) -> tuple[dict[str, str], dict[str, Any]]:
    """Remove the channels in place. Returns ``{layer: "outputs → kept"}`` and the transform step
    recording every changed module's new tensor shapes and size attributes."""
    model.eval()
    before = _outputs(model)
    shapes_before = _shapes(model)
    _pruner(model, spec, amount).step()
    after = _outputs(model)
    modules: dict[str, Any] = {}
    for name, tensors in _shapes(model).items():
        if tensors != shapes_before.get(name):
            module = model.get_submodule(name)
            attrs = {a: getattr(module, a) for a in _ATTRS if isinstance(getattr(module, a, None), int)}
            modules[name] = {"tensors": tensors, "attrs": attrs}
    changes = {n: f"{before[n]} → {after[n]}" for n in before if after[n] != before[n]}
    return changes, {"kind": "prune-channels", "modules": modules}


def _shapes(model: nn.Module) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for name, module in model.named_modules():
        tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        shapes = {k: list(v.shape) for k, v in tensors if v is not None and v.dim() > 0}
        if shapes:
            out[name] = shapes
    return out


def rebuild(model: nn.Module, step: dict[str, Any]) -> nn.Module:
    """Give ``model``'s modules the shapes a ``remove`` step recorded (weights are loaded afterwards)."""
    for name, record in step.get("modules", {}).items():
        module = model.get_submodule(name)
        for key, shape in record["tensors"].items():
            old = getattr(module, key)
            new = torch.zeros(shape, dtype=old.dtype)
            if isinstance(old, nn.Parameter):
                setattr(module, key, nn.Parameter(new, requires_grad=old.requires_grad))
            else:
                setattr(module, key, new)
        for attr, value in record["attrs"].items():
            setattr(module, attr, int(value))
    return model
