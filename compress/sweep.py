"""The default sweep: baseline plus every technique on a base model, as job step lists."""

from __future__ import annotations

from typing import Any


def default_sweep(quick: bool = False) -> list[dict[str, Any]]:
    """One job per technique; ``quick`` keeps fine-tuning short (demo on digits)."""
    ft = {"epochs": 1} if quick else {"epochs": 2}
    return [
        {"technique": "orthogonal", "params": {"search": True, **ft}},
        {"technique": "separable", "params": {"search": True, **ft}},
        {"technique": "narrow", "params": {"width": 0.5, "epochs": 3 if quick else 5}},
        {"technique": "prune-l1", "params": {"scope": "global", "search": True, "retrain": "finetune", **ft}},
        {"technique": "prune-channels", "params": {"mode": "remove", "search": True, **ft}},
        {"technique": "quantize-int8", "params": {"backend": "fbgemm"}},
        {"technique": "quantize-dynamic", "params": {}},
    ]
