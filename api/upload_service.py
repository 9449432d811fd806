"""Pretrained base models uploaded as a JSON layer spec plus safetensors weights, and nothing else.

The weights file is judged by its first bytes, never by its name: a pickle (``\\x80``), a zip archive
(``PK\\x03\\x04``: ``torch.save`` checkpoints, TorchScript files and ``.pt2`` exports are all zips with a
pickle inside) or anything that is not a well-formed safetensors header is refused with 422 before a
single tensor is read. A safetensors file is a little-endian u64 header length, a JSON header naming
each tensor's dtype, shape and byte range, then raw bytes: reading it executes nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from pydantic import ValidationError
from safetensors.torch import load as st_load

from api.model_service import check_architecture, check_dataset, check_dataset_fits
from api.schemas import ModelUpload
from api.service_errors import InvalidInput, unprocessable
from compress.layer_spec import ModelSpec, build_model
from compress.training import TrainConfig
from store.artifacts import ArtifactStore
from store.settings import Settings

EVALUATE_TECHNIQUE = "evaluate"
"""The technique name of an uploaded model's job: measure the given weights, do not train."""

DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}  # fmt: skip
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit

LOC = ["body", "weights"]


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def refuse(msg: str, type_: str) -> InvalidInput:
    return unprocessable(LOC, msg, type_)


def sniff(data: bytes) -> str | None:
    """What the file is when it is certainly not safetensors (a reason to refuse), else None.

    The safetensors shape is tested first: its header length is arbitrary, so its first byte may well be
    0x80, like a pickle's. Either way nothing is unpickled; this only picks the message.
    """
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if len(data) >= 10 and data[8:9] == b"{" and 2 <= size <= len(data) - 8:
        return None
    if data[:4] == b"PK\x03\x04":
        return (
            "a zip archive: a torch.save checkpoint, a TorchScript file or a .pt2 export, all of which carry a "
            "pickle and are never loaded here"
        )
    if data[:1] == b"\x80":
        return "a pickle (e.g. a .pt/.pth/.pkl file), which can run code when loaded and is never loaded here"
    return "not a safetensors file (an 8-byte little-endian header length, then that many bytes of JSON)"


def read_header(data: bytes) -> dict[str, TensorInfo]:
    """Parse and check a safetensors header without touching the tensor bytes."""
    kind = sniff(data)
    if kind:
        raise refuse(f"the weights file is {kind}; upload the weights as .safetensors", "unsupported_weights_format")
    size = int.from_bytes(data[:8], "little")
    if size > MAX_HEADER_BYTES:
        raise refuse(f"the safetensors header ({size} bytes) is too large", "invalid_safetensors")
    try:
        header = json.loads(data[8 : 8 + size].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise refuse("the safetensors header is not valid UTF-8 JSON", "invalid_safetensors") from None
    if not isinstance(header, dict):
        raise refuse("the safetensors header is not a JSON object", "invalid_safetensors")
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise refuse(f"tensor '{name}': expected dtype, shape and data_offsets", "invalid_safetensors")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in DTYPE_BYTES:
            raise refuse(f"tensor '{name}': unknown dtype {dtype!r}", "invalid_safetensors")
        if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d < 2**40 for d in shape):
            raise refuse(f"tensor '{name}': shape must be a list of sizes", "invalid_safetensors")
        ok = isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
        if not ok or not 0 <= offsets[0] <= offsets[1] <= len(data) - 8 - size:
            raise refuse(f"tensor '{name}': data_offsets outside the file", "invalid_safetensors")
        if offsets[1] - offsets[0] != math.prod(shape) * DTYPE_BYTES[dtype]:
            raise refuse(f"tensor '{name}': byte range does not match its shape and dtype", "invalid_safetensors")
        tensors[name] = TensorInfo(dtype, tuple(shape))
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise refuse(f"tensors '{a}' and '{b}' overlap", "invalid_safetensors")
    return tensors


def mismatches(given: dict[str, TensorInfo], expected: dict[str, tuple[tuple[int, ...], bool]]) -> list[str]:
    """What differs between the file's tensors and the spec's state dict (name -> (shape, is_float))."""
    problems = []
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    if missing:
        problems.append(f"missing from the weights: {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
    if unexpected:
        shown = ", ".join(unexpected[:20]) + (" ..." if len(unexpected) > 20 else "")
        problems.append(f"not in the spec: {shown}")
    for name in sorted(set(given) & set(expected)):
        shape, is_float = expected[name]
        if given[name].shape != shape:
            problems.append(f"'{name}' has shape {list(given[name].shape)}, the spec needs {list(shape)}")
        elif is_float and given[name].dtype not in FLOAT_DTYPES:
            problems.append(f"'{name}' is {given[name].dtype}, the spec needs a float tensor")
        elif not is_float and given[name].dtype in FLOAT_DTYPES | {"BOOL"}:
            problems.append(f"'{name}' is {given[name].dtype}, the spec needs an integer tensor")
    return problems


def store_uploaded_model(
    req: ModelUpload, data: bytes, settings: Settings, model_id: str
) -> tuple[ModelSpec, str, str]:
    """Check the spec and the weights and store the model under a generated name: ``(spec, dataset, artifact
    name)``. CPU and file work only; the caller adds the rows (``model_service.add_model``) or deletes the file."""
    dataset = check_dataset(req.dataset, settings.data_roots, loc=["body", "spec", "dataset"])
    spec = check_architecture(req, settings, loc=["body", "spec", "architecture"])
    check_dataset_fits(dataset, req.dataset, spec, settings, loc=["body", "spec", "dataset"])
    tensors = read_header(data)
    model = build_model(spec)
    state = model.state_dict()
    expected = {k: (tuple(v.shape), v.is_floating_point()) for k, v in state.items()}
    problems = mismatches(tensors, expected)
    if problems:
        raise refuse("the weights do not match the layer spec: " + "; ".join(problems), "weights_mismatch")
    try:
        model.load_state_dict(st_load(data), strict=True)
    except Exception as exc:  # the header was checked; this is a corrupt body
        raise refuse(f"the weights could not be read: {str(exc)[:200]}", "invalid_safetensors") from None
    name, _ = ArtifactStore(settings.artifact_dir).save(model, spec, f"upload-{model_id}")
    return spec, dataset, name


UPLOAD_TRAINING = TrainConfig(epochs=0).model_dump(mode="json")
"""Untrained + a stored file = uploaded weights: the job measures them."""


def spec_field_error(exc: ValidationError) -> InvalidInput:
    """A ValidationError of the ``spec`` form field, located under body.spec."""
    errors = [
        {"loc": ["body", "spec", *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return InvalidInput(errors)
