"""The conditions a latency figure was measured under: threads, quantized engine, PyTorch, CPU (and its int8
instructions), host.

A latency is only comparable with another measured under the same conditions (and, better, in the
same session, interleaved): the same network at 1 and 2 torch threads, on two machines of a
``--scale worker=3`` deployment or with another PyTorch differs by more than most reductions gain.
Every latency figure carries these so that a ratio between two of them can be refused when they differ.
"""

from __future__ import annotations

import platform
import socket
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from torch import nn

_COMPARED = ("torch_threads", "torch_version", "cpu_model", "host")
_COMPARED_WHEN_KNOWN = ("cpu_features",)
"""Recorded since rows had them: compared only when both figures carry them."""
_INT8_DOT = {
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx_vnni_int8": "AVX-VNNI-INT8",
    "amx_int8": "AMX-INT8",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
}
"""CPU flags (x86 ``flags``, ARM ``Features``) of int8 dot-product instructions: what int8 kernels need to be
several times faster than float ones (without them an int8 multiply-add takes about as long as a float one)."""


class LatencyConditions(BaseModel):
    """Where and how a latency figure was measured."""

    torch_threads: int = Field(description="torch.get_num_threads() during the measurement.")
    quantized_engine: str = Field(
        description="The quantized engine the model ran under: its own for an int8 network (QuantizedSequential), "
        "else the process-wide torch.backends.quantized.engine (no effect on a float network)."
    )
    torch_version: str
    cpu_model: str = Field(description="/proc/cpuinfo's model name, else platform.processor() / machine.")
    cpu_features: str | None = Field(
        default=None,
        description="PyTorch's CPU capability (the widest vector kernels it uses: AVX2, AVX512, ...) and the "
        "CPU's int8 dot-product instructions (VNNI, AMX, dotprod): one model name can cover CPUs with and "
        "without them, and int8 latency depends on them.",
    )
    machine: str = Field(description="platform.machine(): x86_64, aarch64, ...")
    host: str = Field(description="socket.gethostname(): the worker that measured.")
    measured_at: str = Field(description="UTC time of the measurement, ISO 8601.")
    session_id: str | None = Field(default=None, description="Figures measured together (one retime) share it.")

    def differences(self, other: LatencyConditions) -> dict[str, tuple[object, object]]:
        """The conditions that differ from ``other`` (threads, PyTorch, CPU, host, and the CPU's features when
        both figures record them; the engine is part of what a variant *is*, not of how it was timed): empty
        when the two figures may be compared."""
        out = {k: (getattr(self, k), getattr(other, k)) for k in _COMPARED if getattr(self, k) != getattr(other, k)}
        for k in _COMPARED_WHEN_KNOWN:
            mine, theirs = getattr(self, k), getattr(other, k)
            if mine is not None and theirs is not None and mine != theirs:
                out[k] = (mine, theirs)
        return out


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name: from /proc/cpuinfo (``model name`` on x86, ``Model``/``Hardware`` on ARM),
    else ``platform.processor()``, else ``platform.machine()``."""
    cpuinfo = _read_cpuinfo() if cpuinfo is None else cpuinfo
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), " ".join(value.split()))
    for key in ("model name", "model", "hardware", "cpu model"):
        if key in fields:
            return fields[key]
    return platform.processor() or platform.machine() or "unknown"


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_features(cpuinfo: str | None = None, capability: str | None = None) -> str | None:
    """E.g. ``AVX2, int8 dot product: none`` or ``AVX512, int8 dot product: AVX512-VNNI``: PyTorch's CPU
    capability and the int8 dot-product instructions listed in /proc/cpuinfo; None when /proc/cpuinfo lists no
    flags (macOS, a locked-down container): unknown, so never compared."""
    cpuinfo = _read_cpuinfo() if cpuinfo is None else cpuinfo
    flags: set[str] = set()
    listed = False
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            listed = True
            flags.update(value.split())
    if not listed:
        return None
    dots = [name for flag, name in _INT8_DOT.items() if flag in flags]
    cap = capability or torch.backends.cpu.get_cpu_capability()
    return f"{cap}, int8 dot product: {' / '.join(dots) or 'none'}"


def _engine(model: nn.Module | None) -> str:
    if model is not None:
        for m in model.modules():
            backend = getattr(m, "backend", None)
            if type(m).__name__ == "QuantizedSequential" and isinstance(backend, str):
                return backend
    return str(torch.backends.quantized.engine)


def latency_conditions(model: nn.Module | None = None, session_id: str | None = None) -> LatencyConditions:
    """The conditions in force now, for ``model`` (whose own quantized engine, if any, is the one recorded)."""
    return LatencyConditions(
        torch_threads=torch.get_num_threads(),
        quantized_engine=_engine(model),
        torch_version=torch.__version__,
        cpu_model=cpu_model(),
        cpu_features=cpu_features(),
        machine=platform.machine(),
        host=socket.gethostname(),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        session_id=session_id,
    )
