"""Which evaluation samples a model got right: one bit per sample, as base64 text for JSON.

A row keeps this so that it can be compared with its base model *on the same samples* (McNemar's
paired test, :mod:`compress.stats`) long after the models are gone. MNIST's 10,000 evaluation images
take 1,250 bytes (1,668 base64 characters); digits' 359 take 60 characters.
"""

from __future__ import annotations

import base64

import numpy as np
import torch
from numpy.typing import ArrayLike


def pack_correct(correct: torch.Tensor | ArrayLike) -> str:
    """Per-sample booleans (in evaluation-split order) → base64 of ``numpy.packbits`` (big-endian bits)."""
    bits = correct.detach().cpu().numpy() if isinstance(correct, torch.Tensor) else np.asarray(correct)
    return base64.b64encode(np.packbits(bits.astype(bool).ravel()).tobytes()).decode("ascii")


def unpack_correct(packed: str, n: int) -> np.ndarray:
    """The first ``n`` booleans of :func:`pack_correct`'s text; a ValueError when it holds fewer."""
    raw = np.frombuffer(base64.b64decode(packed.encode("ascii"), validate=True), dtype=np.uint8)
    if raw.size * 8 < n or raw.size > (n + 7) // 8:
        raise ValueError(f"correctness bits hold {raw.size * 8} bits (padded), expected {n}")
    return np.unpackbits(raw, count=n).astype(bool)
