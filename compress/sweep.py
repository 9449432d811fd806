"""The default sweep: baseline plus every technique on a base model, as job step lists."""

from __future__ import annotations

import platform
from typing import Any

_X86 = ("x86_64", "amd64", "x86", "i386", "i686")


def default_sweep(quick: bool = False) -> list[dict[str, Any]]:
    """One job per technique; ``quick`` keeps fine-tuning short (demo on digits).

    Searches stop "until accuracy drops significantly" (``stop_rule="significance"``: within the budget
    and no significant drop against the base model); narrow trains with the base model's own settings
    (a fair comparison); int8 uses PyTorch's default engine for the CPU, with fbgemm beside it on x86
    for reference.
    """
    ft = {"epochs": 1} if quick else {"epochs": 2}
    search = {"search": True, "stop_rule": "significance"}
    int8_reference = [{"technique": "quantize-int8", "params": {"backend": "fbgemm"}}]
    return [
        {"technique": "orthogonal", "params": {**search, **ft}},
        {"technique": "separable", "params": {**search, **ft}},
        {"technique": "narrow", "params": {"width": 0.5}},
        {"technique": "prune-l1", "params": {"scope": "global", **search, "retrain": "finetune", **ft}},
        {"technique": "prune-channels", "params": {"mode": "remove", **search, **ft}},
        {"technique": "quantize-int8", "params": {}},
        *(int8_reference if platform.machine().lower() in _X86 else []),
        {"technique": "quantize-dynamic", "params": {}},
    ]
