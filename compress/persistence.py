"""Models stored as one safetensors file: weights as tensors, the ModelSpec as JSON metadata.

Nothing is ever unpickled: loading parses the JSON spec, builds the allow-listed layers, replays the
spec's transforms (int8 conversion, ...) with the ``rebuild`` of the technique that recorded each one
(looked up in the technique registry by the step's ``kind``) and loads the tensors. State-dict
entries that are not plain tensors are encoded explicitly:

- quantized tensor -> its int8/uint8 ``int_repr()`` under the same key, plus its scale and zero
  point (per tensor, in the metadata) or ``<key>::scales`` / ``<key>::zero_points`` tensors (per
  channel, with the axis in the metadata);
- tuple (packed params of quantized Linear) -> ``<key>::0``, ``<key>::1``, ...;
- ``torch.dtype`` / ``None`` / numbers -> metadata only.

The state dict's per-module format versions (``state_dict._metadata``) are kept too: quantized
modules read their tensors differently by version, and without it they expect an old layout.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from compress.layer_spec import ModelSpec, build_model
from compress.techniques import TECHNIQUES

_SPEC_KEY = "netreduce_spec"
_ENTRIES_KEY = "netreduce_entries"
_VERSIONS_KEY = "netreduce_versions"


def _encode(key: str, value: Any, tensors: dict[str, torch.Tensor]) -> dict[str, Any] | None:
    if isinstance(value, torch.Tensor) and value.is_quantized:
        tensors[key] = value.int_repr().contiguous().clone()
        info: dict[str, Any] = {"q": str(value.dtype).removeprefix("torch."), "shape": list(value.shape)}
        if value.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            info["axis"] = value.q_per_channel_axis()
            tensors[f"{key}::scales"] = value.q_per_channel_scales().contiguous().clone()
            tensors[f"{key}::zero_points"] = value.q_per_channel_zero_points().contiguous().clone()
        else:
            info["scale"] = value.q_scale()
            info["zero_point"] = value.q_zero_point()
        return info
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().contiguous().clone()
        return None
    if isinstance(value, tuple | list):
        return {"tuple": [_encode(f"{key}::{i}", v, tensors) for i, v in enumerate(value)]}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if value is None:
        return {"none": True}
    if isinstance(value, int | float | bool | str):
        return {"value": value}
    raise TypeError(f"cannot store state entry '{key}' of type {type(value).__name__}")


def _decode(key: str, info: dict[str, Any] | None, tensors: dict[str, torch.Tensor]) -> Any:
    if info is None:
        return tensors[key]
    if "q" in info:
        raw = tensors[key]
        if "axis" in info:
            scales, zero_points = tensors[f"{key}::scales"], tensors[f"{key}::zero_points"]
            return torch._make_per_channel_quantized_tensor(raw, scales, zero_points, info["axis"])
        return torch._make_per_tensor_quantized_tensor(raw, info["scale"], info["zero_point"])
    if "tuple" in info:
        return tuple(_decode(f"{key}::{i}", sub, tensors) for i, sub in enumerate(info["tuple"]))
    if "dtype" in info:
        return getattr(torch, info["dtype"])
    if "none" in info:
        return None
    return info["value"]


def rebuild_model(spec: ModelSpec) -> nn.Module:
    """The structure ``spec`` describes, weights not loaded: its float layers, then each of its
    ``transforms`` replayed by the technique that recorded it."""
    model = build_model(spec.model_copy(update={"transforms": []}))
    for step in spec.transforms:
        kind = step.get("kind", "")
        technique = TECHNIQUES.get(kind) if kind in TECHNIQUES else None
        if technique is None or technique.rebuild is None:
            known = sorted(t.name for t in TECHNIQUES.list() if t.rebuild is not None)
            raise ValueError(f"unknown transform '{kind}'; known: {', '.join(known)}")
        model = technique.rebuild(model, step)
    return model


def model_to_bytes(model: nn.Module, spec: ModelSpec) -> bytes:
    """Serialise ``model`` (structure from ``spec``) to safetensors bytes."""
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, Any] = {}
    state = model.state_dict()
    for key, value in state.items():
        info = _encode(key, value, tensors)
        entries[key] = info
    versions = {prefix: {"version": m.get("version")} for prefix, m in getattr(state, "_metadata", {}).items()}
    metadata = {
        _SPEC_KEY: spec.model_dump_json(),
        _ENTRIES_KEY: json.dumps(entries),
        _VERSIONS_KEY: json.dumps(versions),
    }
    return st_save(tensors, metadata=metadata)


def model_from_bytes(data: bytes) -> tuple[nn.Module, ModelSpec]:
    """Rebuild a model from safetensors bytes written by ``model_to_bytes`` (no pickle)."""
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    meta = header.get("__metadata__") or {}
    if _SPEC_KEY not in meta:
        raise ValueError("not a netreduce model file: the safetensors metadata has no model spec")
    spec = ModelSpec.model_validate_json(meta[_SPEC_KEY])
    entries: dict[str, Any] = json.loads(meta.get(_ENTRIES_KEY, "{}"))
    tensors = st_load(data)
    state = OrderedDict((key, _decode(key, info, tensors)) for key, info in entries.items())
    state._metadata = OrderedDict(json.loads(meta.get(_VERSIONS_KEY, "{}")))  # type: ignore[attr-defined]
    model = rebuild_model(spec)
    model.load_state_dict(state)
    model.eval()
    return model, spec


def save_model(model: nn.Module, spec: ModelSpec, path: str | Path) -> int:
    """Write the model to ``path`` (a .safetensors file); returns its size in bytes."""
    data = model_to_bytes(model, spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)


def load_model(path: str | Path) -> tuple[nn.Module, ModelSpec]:
    return model_from_bytes(Path(path).read_bytes())
