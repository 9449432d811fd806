"""The default sweep is the course lab's table: one job per comparison the lab asks for, in its order.

Baseline (the base model's own row), then: an earlier, smaller network; orthogonal weights and separable
k×1 + 1×k filters, heaviest layers first, by search; L1 unstructured pruning per layer and global, each
with the survivors kept, fine-tuned and re-initialised (over three seeds: mean ± std); Ln structured
pruning of whole channels as a mask and removed; static int8 with every engine this CPU's PyTorch has;
dynamic int8.
"""

from __future__ import annotations

from typing import Any

from compress.techniques.quantize import DEFAULT_BACKEND, available_backends

L1_AMOUNT = 0.8
"""Sparsity at which the survivors' treatments (keep / fine-tune / re-init) are compared."""
CHANNELS_AMOUNT = 0.5
"""Fraction of channels pruned, as a mask and removed: same accuracy expected, different size and speed."""
REINIT_SEEDS = [0, 1, 2]


def lab_groups() -> dict[str, str]:
    """The lab's group of each technique, in the lab's order (the report groups rows this way)."""
    return {
        "baseline": "Base network",
        "narrow": "An earlier, smaller network",
        "orthogonal": "Orthogonal weights",
        "separable": "Separable filters",
        "prune-l1": "L1 unstructured pruning",
        "prune-channels": "Ln structured pruning (channels)",
        "quantize-int8": "Post-training int8 (static)",
        "quantize-dynamic": "Post-training int8 (dynamic)",
    }


def default_sweep(quick: bool = False) -> list[dict[str, Any]]:
    """The lab's jobs, in the lab's order; ``quick`` keeps fine-tuning short (demo on digits).

    Searches stop "until accuracy drops significantly" (``stop_rule="significance"``: within the budget
    and no significant drop against the base model); narrow trains with the base model's own settings
    (a fair comparison); the int8 default engine first, then every other engine the CPU has.
    """
    ft = {"epochs": 1} if quick else {"epochs": 2}
    search = {"search": True, "stop_rule": "significance"}
    l1 = [
        {"technique": "prune-l1", "params": {"amount": L1_AMOUNT, "scope": scope, **treatment, **ft}}
        for scope in ("layer", "global")
        for treatment in (
            {"retrain": "keep"},
            {"retrain": "finetune"},
            {"retrain": "reinit", "seeds": REINIT_SEEDS},
        )
    ]
    for job in l1:
        if job["params"]["retrain"] == "keep":
            job["params"].pop("epochs")
    channels = [
        {"technique": "prune-channels", "params": {"amount": CHANNELS_AMOUNT, "mode": mode, **ft}}
        for mode in ("mask", "remove")
    ]
    engines = [DEFAULT_BACKEND, *(b for b in available_backends() if b != DEFAULT_BACKEND)]
    int8 = [{"technique": "quantize-int8", "params": {} if b == DEFAULT_BACKEND else {"backend": b}} for b in engines]
    return [
        {"technique": "narrow", "params": {"width": 0.5}},
        {"technique": "orthogonal", "params": {**search, **ft}},
        {"technique": "separable", "params": {**search, **ft}},
        *l1,
        *channels,
        *int8,
        {"technique": "quantize-dynamic", "params": {}},
    ]
