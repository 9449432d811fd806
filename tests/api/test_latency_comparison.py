"""Speedups only between latencies measured under the same conditions; the rest flagged, never mixed.

And the recommendation's ``no_significant_drop``: a row significantly worse than the baseline is excluded.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.seed import SEED_CONDITIONS, add_job, add_model, add_row

OTHER_THREADS = {**SEED_CONDITIONS, "torch_threads": 2}
OTHER_SESSION = {**SEED_CONDITIONS, "session_id": "another"}


@pytest.fixture(scope="module")
def table(engine: Engine) -> str:
    """baseline 10 ms; 'same' 5 ms (one session); 'threads' 1 ms at 2 threads; 'bare' no conditions;
    'later' 4 ms, same conditions but another session."""
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    rows: dict[str, dict[str, Any]] = {
        "baseline": {"technique": "baseline", "latency_ms_bs64": 10.0, "latency_ms_bs1": 1.0},
        "same": {"technique": "prune-l1", "latency_ms_bs64": 5.0, "latency_ms_bs1": 0.5},
        "threads": {"technique": "quantize-int8", "latency_ms_bs64": 1.0, "latency_conditions": OTHER_THREADS},
        "bare": {"technique": "narrow", "latency_ms_bs64": 0.5, "latency_conditions": None},
        "later": {"technique": "separable", "latency_ms_bs64": 4.0, "latency_conditions": OTHER_SESSION},
    }
    for label, values in rows.items():
        job = train if label == "baseline" else add_job(engine, mid, technique=values["technique"])
        add_row(engine, job, mid, 0, label=label, accuracy=95.0, accuracy_drop=0.0, **values)
    return mid


def _rows(client: TestClient, mid: str, **params: Any) -> dict[str, dict[str, Any]]:
    got = client.get("/comparison", params={"base_model_id": mid, **params})
    assert got.status_code == 200, got.text
    return {r["label"]: r for r in got.json()}


def test_speedup_only_between_comparable_latencies(client: TestClient, table: str) -> None:
    rows = _rows(client, table)
    assert rows["baseline"]["speedup_bs64"] == 1.0 and rows["baseline"]["latency_note"] is None
    assert rows["same"]["speedup_bs64"] == 2.0 and rows["same"]["speedup_bs1"] == 2.0
    assert rows["same"]["latency_note"] is None
    assert rows["threads"]["speedup_bs64"] is None
    assert "torch_threads 2 vs 1" in rows["threads"]["latency_note"]
    assert rows["threads"]["latency_ms_bs64"] == 1.0  # the figure itself stays; only the ratio is refused
    assert rows["bare"]["speedup_bs64"] is None and "no recorded latency conditions" in rows["bare"]["latency_note"]
    assert rows["later"]["speedup_bs64"] == 2.5 and "separate sessions" in rows["later"]["latency_note"]
    assert '"session_id":"seed-session"' in rows["same"]["latency_conditions"]


def test_speedups_divide_lower_quartiles_and_never_mix_a_quartile_with_a_median(
    client: TestClient, engine: Engine
) -> None:
    """A burst of other load lengthens some passes: the speedup divides the lower quartiles (p25) when both rows
    have them, the medians when either does not."""
    mid = add_model(engine)
    base = {"technique": "baseline", "latency_ms_bs64": 10.0, "latency_ms_bs64_p25": 8.0, "latency_ms_bs1": 1.0}
    add_row(engine, add_job(engine, mid, technique="train"), mid, 0, label="baseline", **base)
    quartiled = {"latency_ms_bs64": 5.0, "latency_ms_bs64_p25": 2.0, "latency_ms_bs1": 0.5}
    add_row(engine, add_job(engine, mid), mid, 0, label="quartiled", technique="prune-l1", **quartiled)
    median_only = {"latency_ms_bs64": 4.0, "latency_ms_bs64_p25": None, "latency_ms_bs1": 0.25}
    add_row(engine, add_job(engine, mid), mid, 0, label="median only", technique="narrow", **median_only)
    rows = _rows(client, mid)
    assert rows["quartiled"]["speedup_bs64"] == 4.0  # 8 / 2, not 10 / 5
    assert rows["median only"]["speedup_bs64"] == 2.5  # 10 / 4: the baseline's median, not its quartile
    assert rows["quartiled"]["speedup_bs1"] == 2.0 and rows["median only"]["speedup_bs1"] == 4.0  # no p25 at bs1


def test_csv_appends_the_new_columns_after_the_old_ones(client: TestClient, table: str) -> None:
    header = client.get("/comparison", params={"base_model_id": table, "format": "csv"}).text.splitlines()[0]
    cols = header.split(",")
    old = ["label", "technique", "params", "n_params", "bytes", "file_bytes", "macs", "flops", "ops", "sparse_macs"]
    assert cols[: len(old)] == old
    assert cols.index("created_at") < cols.index("eval_samples") < cols.index("drop_p_value")
    assert cols.index("drop_p_value") < cols.index("speedup_bs64") < cols.index("ort_latency_ms_bs64")
    assert cols[-1] == "pareto"


def test_incomparable_latencies_never_decide(client: TestClient, table: str) -> None:
    """'threads' and 'bare' look fastest but were not timed like the baseline: the latency pick is 'later'
    (same conditions), and only comparable rows are on the latency front."""
    rec = client.get(
        "/recommendation", params={"base_model_id": table, "priority": "latency", "max_accuracy_drop": 1}
    ).json()
    assert rec["chosen"]["label"] == "later"
    excluded = {e["row"]["label"]: e for e in rec["excluded"]}
    assert excluded["threads"]["reasons"] == ["missing_metric"] and excluded["bare"]["reasons"] == ["missing_metric"]
    flags = {
        r["label"]: r["pareto"]
        for r in client.get("/comparison", params={"base_model_id": table, "objectives": "latency_ms_bs64"}).json()
    }
    assert flags["later"] is True and flags["threads"] is False and flags["bare"] is False


@pytest.fixture(scope="module")
def tested(engine: Engine) -> str:
    """'noisy' drops 0.5 points, not significant; 'worse' drops 0.4 points, significant (p 0.01)."""
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    add_row(engine, train, mid, 0, label="baseline", technique="baseline", accuracy=95.0, bytes=4000)
    for label, drop, p, size in (("noisy", 0.5, 0.3, 1000), ("worse", 0.4, 0.01, 500)):
        job = add_job(engine, mid)
        add_row(
            engine,
            job,
            mid,
            0,
            label=label,
            technique="prune-l1",
            accuracy=95.0 - drop,
            accuracy_drop=drop,
            bytes=size,
            drop_p_value=p,
            drop_significant=p < 0.05,
        )
    return mid


def test_recommendation_can_require_no_significant_drop(client: TestClient, tested: str) -> None:
    params = {"base_model_id": tested, "priority": "size", "max_accuracy_drop": 1.0}
    assert client.get("/recommendation", params=params).json()["chosen"]["label"] == "worse"
    rec = client.get("/recommendation", params={**params, "no_significant_drop": "true"}).json()
    assert rec["chosen"]["label"] == "noisy"
    (worse,) = [e for e in rec["excluded"] if e["row"]["label"] == "worse"]
    assert worse["reasons"] == ["significant_drop"] and "p = 0.01" in worse["detail"]
    assert "no significant drop" in rec["constraint"]
    rows = {r["label"]: r for r in client.get("/comparison", params={"base_model_id": tested}).json()}
    assert rows["worse"]["drop_p_value"] == 0.01 and rows["worse"]["drop_significant"] is True
