"""Re-time many networks together: interleaved rounds, one session, one set of conditions.

A latency ratio only means something between figures measured under the same conditions, and a machine's
speed drifts (other load, frequency scaling, cache state). So a retime visits every network in each round,
starting one further along the list each round (A B C, B C A, C A B, ...), and takes each network's median
and quartiles over all its rounds: drift hits every network alike, and the ratios between them hold.
Each network is timed in PyTorch eager and, when an ONNX export is given, in onnxruntime (CPU provider,
same threads), in the same round.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field
from torch import nn

from compress.latency_conditions import LatencyConditions, latency_conditions
from compress.measure import LatencyStats, latency_stats, time_forward

BATCH_SIZES = (1, 64)


@dataclass
class ToTime:
    """One network of a retime: ``key`` names it in the result (e.g. the result row's id)."""

    key: str
    model: nn.Module
    input_shape: tuple[int, ...]
    onnx: bytes | None = None


class Retimed(BaseModel):
    """One network's figures from a retime."""

    eager: dict[int, LatencyStats] = Field(description="Per batch size: median and quartiles over every round.")
    ort: dict[int, float] = Field(default_factory=dict, description="Per batch size: onnxruntime median ms.")
    conditions: LatencyConditions


class RetimeResult(BaseModel):
    session_id: str
    rounds: int
    runs_per_round: int
    order: list[tuple[int, str]] = Field(description="(round, key) in the order they were timed: the interleaving.")
    figures: dict[str, Retimed]
    stopped_early: bool = False


def rotation(keys: list[str], round_: int) -> list[str]:
    """The order of one round: the list rotated by the round's number."""
    if not keys:
        return []
    k = round_ % len(keys)
    return keys[k:] + keys[:k]


def retime(
    items: list[ToTime],
    rounds: int = 5,
    runs: int = 5,
    warmup: int = 2,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    should_stop: Callable[[], bool] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> RetimeResult:
    """Time every item in ``rounds`` interleaved rounds of ``runs`` passes per batch size (after ``warmup``)."""
    session_id = uuid.uuid4().hex
    by_key = {it.key: it for it in items}
    eager: dict[str, dict[int, list[float]]] = {k: {bs: [] for bs in batch_sizes} for k in by_key}
    ort: dict[str, dict[int, list[float]]] = {k: {bs: [] for bs in batch_sizes} for k in by_key}
    sessions = {k: _ort_session(it.onnx) for k, it in by_key.items() if it.onnx is not None}
    order: list[tuple[int, str]] = []
    stopped = False
    done_rounds = 0
    for r in range(rounds):
        if should_stop is not None and r > 0 and should_stop():
            stopped = True
            break
        for key in rotation(list(by_key), r):
            it = by_key[key]
            order.append((r, key))
            for bs in batch_sizes:
                eager[key][bs] += time_forward(it.model, it.input_shape, bs, runs=runs, warmup=warmup)
                if key in sessions:
                    ort[key][bs].append(_time_ort(sessions[key], it.input_shape, bs, runs, warmup))
        done_rounds += 1
        if on_round is not None:
            on_round(r + 1, rounds)
    figures = {
        key: Retimed(
            eager={bs: latency_stats(t) for bs, t in eager[key].items() if t},
            ort={bs: statistics.median(t) for bs, t in ort[key].items() if t},
            conditions=latency_conditions(by_key[key].model, session_id=session_id),
        )
        for key in by_key
    }
    return RetimeResult(
        session_id=session_id,
        rounds=done_rounds,
        runs_per_round=runs,
        order=order,
        figures=figures,
        stopped_early=stopped,
    )


def row_values(figures: Retimed) -> dict[str, object]:
    """A retimed network's figures as result-row column values."""
    out: dict[str, object] = {"latency_conditions": figures.conditions.model_dump(mode="json")}
    out["torch_threads"] = figures.conditions.torch_threads
    for bs, stats in figures.eager.items():
        out[f"latency_ms_bs{bs}"] = stats.median
        out[f"latency_ms_bs{bs}_p25"] = stats.p25
        out[f"latency_ms_bs{bs}_p75"] = stats.p75
    for bs, ms in figures.ort.items():
        out[f"ort_latency_ms_bs{bs}"] = ms
    return out


def _ort_session(onnx: bytes | None):  # noqa: ANN202  (an onnxruntime.InferenceSession)
    from compress.export_onnx import ort_session

    return ort_session(onnx) if onnx is not None else None


def _time_ort(session: object, input_shape: tuple[int, ...], bs: int, runs: int, warmup: int) -> float:
    from compress.export_onnx import time_ort

    return time_ort(session, input_shape, bs, runs=runs, warmup=warmup)
