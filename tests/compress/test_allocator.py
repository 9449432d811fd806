"""The steady allocator: applied on glibc (this machine's), idempotent, and on by the time anything is timed."""

from __future__ import annotations

import ctypes
import ctypes.util

from torch import nn

from compress.allocator import steady_allocator
from compress.measure import time_forward


def test_it_applies_once_and_timing_turns_it_on() -> None:
    assert ctypes.util.find_library("c") is not None  # glibc on these machines: the tweak must apply
    time_forward(nn.Linear(4, 2), (4,), 1, runs=1, warmup=0)
    assert steady_allocator.cache_info().currsize == 1
    assert steady_allocator() is True and steady_allocator() is True
