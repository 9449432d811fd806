"""compress.retime: interleaved rounds over every network, one session id, a stop between rounds."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from compress.retime import ToTime, retime, rotation, row_values


def _nets() -> list[ToTime]:
    small = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    big = nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4))
    return [ToTime("small", small.eval(), (1, 4, 4)), ToTime("big", big.eval(), (1, 4, 4))]


def test_rotation_starts_one_further_along_each_round() -> None:
    assert [rotation(["a", "b", "c"], r) for r in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert rotation([], 3) == []


def test_every_round_times_every_network_under_one_session() -> None:
    rounds_seen: list[tuple[int, int]] = []
    res = retime(_nets(), rounds=3, runs=2, warmup=1, on_round=lambda d, n: rounds_seen.append((d, n)))
    assert res.rounds == 3 and not res.stopped_early
    assert res.order == [(0, "small"), (0, "big"), (1, "big"), (1, "small"), (2, "small"), (2, "big")]
    assert rounds_seen == [(1, 3), (2, 3), (3, 3)]
    assert {f.conditions.session_id for f in res.figures.values()} == {res.session_id}
    for fig in res.figures.values():
        assert set(fig.eager) == {1, 64} and fig.ort == {}  # no ONNX given: eager only
        stats = fig.eager[64]
        assert stats.runs == 3 * 2 and stats.p25 <= stats.median <= stats.p75
    values = row_values(res.figures["big"])
    assert values["torch_threads"] == torch.get_num_threads()
    assert values["latency_ms_bs64"] == res.figures["big"].eager[64].median
    assert values["latency_conditions"]["session_id"] == res.session_id
    assert "ort_latency_ms_bs64" not in values


def test_a_stop_request_ends_the_retime_between_rounds() -> None:
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return True  # stop as soon as asked: that is only after the first full round

    res = retime(_nets(), rounds=4, runs=1, warmup=0, should_stop=should_stop)
    assert res.stopped_early and res.rounds == 1 and asked == [1]  # asked once, before the second round
    assert Counter(r for r, _ in res.order) == {0: 2}  # the round that started finished: both networks timed
