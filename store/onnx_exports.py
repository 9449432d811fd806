"""ONNX exports of stored models, kept beside their artifact: made once, the same bytes every time.

``<artifact>.onnx`` holds the model and ``<artifact>.onnx.json`` what the export says about itself (the route:
fp32, ort-dynamic or ort-static-qdq; opset; calibration). Both are written to a temporary file first and
renamed into place, so two first downloads of the same row at once never see half a file. Within a process,
exports run one at a time: ``torch.onnx.export`` keeps global state (two at once in threads fail with
"GLOBALS.in_onnx_export must be False"), and the second of two first downloads then finds the kept export.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from compress.export_onnx import ExportError, OnnxExport, export_onnx
from compress.persistence import load_model
from store.artifacts import ArtifactStore

_EXPORTING = threading.Lock()
"""Held while an export is made: one at a time per process (torch's exporter is not thread-safe)."""


def onnx_path(store: ArtifactStore, artifact: str) -> Path:
    return store.path(artifact).with_suffix(".onnx")


def stored_export(store: ArtifactStore, artifact: str) -> OnnxExport | None:
    """The export kept beside ``artifact``, or None when there is none yet."""
    path = onnx_path(store, artifact)
    info_path = path.with_suffix(".onnx.json")
    if not path.is_file() or not info_path.is_file():
        return None
    return OnnxExport(path.read_bytes(), json.loads(info_path.read_text()))


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_export(store: ArtifactStore, artifact: str, export: OnnxExport) -> None:
    path = onnx_path(store, artifact)
    _write_atomically(path.with_suffix(".onnx.json"), json.dumps(export.info, sort_keys=True).encode())
    _write_atomically(path, export.data)


def export_stored(
    store: ArtifactStore, artifact: str, calibration: Callable[[], torch.Tensor] | None = None
) -> OnnxExport:
    """The stored model ``artifact`` as ONNX: the kept export, else made now and kept. ``calibration`` gives
    the samples an int8 (static) variant is quantized with in onnxruntime. ExportError when it cannot be."""
    found = stored_export(store, artifact)
    if found is not None:
        return found
    model, spec = load_model(store.path(artifact))
    model.eval()
    needs = any(t.get("kind") == "quantize-int8" for t in spec.transforms)
    samples = calibration() if needs and calibration is not None else None
    with _EXPORTING:
        found = stored_export(store, artifact)  # made meanwhile by another thread
        if found is not None:
            return found
        export = export_onnx(model, spec, samples)
        save_export(store, artifact, export)
    return export


def delete_export(store: ArtifactStore, artifact: str) -> None:
    path = onnx_path(store, artifact)
    path.unlink(missing_ok=True)
    path.with_suffix(".onnx.json").unlink(missing_ok=True)


__all__ = ["ExportError", "delete_export", "export_stored", "onnx_path", "save_export", "stored_export"]


def calibration_for(recipe: list[dict[str, Any]], seed: int, default_samples: int) -> tuple[int, int]:
    """The samples and seed an int8 step was calibrated with: onnxruntime's quantizer gets the same ones."""
    for step in recipe:
        if step.get("technique") == "quantize-int8":
            params = step.get("params") or {}
            return int(params.get("calibration_samples") or default_samples), int(params.get("seed", seed))
    return default_samples, seed


def export_note(export: OnnxExport, **checked: Any) -> dict[str, Any]:
    """What a row's notes say about its export (``notes["onnx"]``)."""
    return {**export.info, **checked}
