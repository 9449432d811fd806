"""At job time, every stored network is exported to ONNX (kept beside its artifact), checked against PyTorch on
the evaluation split, and timed in onnxruntime with the threads of the eager figures."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.datasets import DatasetSplit
from compress.export_onnx import ExportError, measure_ort_latency, ort_predict, ort_session
from compress.measure import Measurement
from store.artifacts import ArtifactStore
from store.onnx_exports import export_note, export_stored


@torch.inference_mode()
def add_onnx_figures(
    artifacts: ArtifactStore,
    name: str,
    model: nn.Module,
    m: Measurement,
    data: DatasetSplit,
    calibration: tuple[int, int],
    latency_runs: int,
) -> dict[str, Any]:
    """Export the stored model ``name``, fill ``m``'s onnxruntime latencies and return its ``notes["onnx"]``:
    the export's route, onnxruntime's accuracy beside PyTorch's (both on the evaluation split) and how often
    their predictions agree (or why it could not be exported)."""
    n, seed = calibration
    try:
        export = export_stored(artifacts, name, lambda: data.calibration_subset(n, seed))
    except ExportError as exc:
        return {"error": str(exc)}
    session = ort_session(export.data)
    ort_pred = ort_predict(session, data.eval_x).argmax(1)
    model.eval()
    torch_pred = torch.cat([model(data.eval_x[i : i + 512]).argmax(1) for i in range(0, len(data.eval_x), 512)])
    shape = tuple(data.eval_x.shape[1:])
    for key, ms in measure_ort_latency(export.data, shape, runs=latency_runs).items():
        setattr(m, key, ms)
    return export_note(
        export,
        ort_accuracy=round(100.0 * float((ort_pred == data.eval_y).float().mean()), 4),
        torch_accuracy=round(100.0 * float((torch_pred == data.eval_y).float().mean()), 4),
        agreement=round(100.0 * float((ort_pred == torch_pred).float().mean()), 4),
        samples=len(data.eval_y),
    )
