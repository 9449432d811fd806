"""GET /comparison/report reads as the lab's write-up: the conclusion from the data, the rows grouped in the
lab's order, intervals and significance on every row, and the caveats (split too small, latency not comparable)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.seed import SEED_CONDITIONS, add_job, add_model, add_row

# label: technique, accuracy, bytes, ops, ms/64, p-value (None: not tested)
TABLE = {
    "base": ("baseline", 97.0, 100_000, 1_000_000, 10.0, None),
    "int8 x86": ("quantize-int8", 96.9, 26_000, 1_000_000, 2.5, 0.8),
    "narrow 0.5": ("narrow", 93.0, 30_000, 300_000, 4.0, 0.0001),
    "prune-l1 global": ("prune-l1", 96.5, 40_000, 1_000_000, 10.0, 0.25),
    "orthogonal fc1": ("orthogonal", 97.2, 70_000, 1_000_000, 9.0, 0.6),
    "channels remove": ("prune-channels", 96.4, 50_000, 450_000, 4.5, 0.2),
}


ELSEWHERE = {**SEED_CONDITIONS, "host": "elsewhere"}


@pytest.fixture(scope="module")
def lab(engine: Engine) -> str:
    mid = add_model(engine)
    train = add_job(engine, mid, technique="train")
    for label, (tech, acc, size, ops, lat, p) in TABLE.items():
        job = train if tech == "baseline" else add_job(engine, mid, technique=tech)
        add_row(
            engine, job, mid, 0, label=label, technique=tech, accuracy=acc, accuracy_drop=round(97.0 - acc, 6),
            bytes=size, ops=ops, macs=ops, latency_ms_bs64=lat, eval_samples=359, accuracy_ci_low=acc - 2,
            latency_ms_bs64_p25=lat * (0.5 if label == "int8 x86" else 0.8),
            accuracy_ci_high=acc + 1.5, drop_p_value=p, drop_significant=None if p is None else p < 0.05,
            latency_conditions=ELSEWHERE if label == "orthogonal fc1" else SEED_CONDITIONS,
        )  # fmt: skip
    reinit = add_job(engine, mid, technique="prune-l1")
    for seed, acc in enumerate((96.0, 96.5, 97.0)):
        add_row(
            engine, reinit, mid, seed + 1, label=f"prune-l1 retrain=reinit (seed={seed})", technique="prune-l1",
            accuracy=acc, accuracy_drop=round(97.0 - acc, 6), eval_samples=359, drop_p_value=0.3, bytes=40_000,
            ops=1_000_000, macs=1_000_000, latency_ms_bs64=10.0,
            drop_significant=False,
        )  # fmt: skip
    return mid


def test_the_writeup_concludes_from_the_data(client: TestClient, lab: str) -> None:
    r = client.get("/comparison/report", params={"base_model_id": lab, "format": "md", "max_accuracy_drop": 1.0})
    assert r.status_code == 200
    md = r.text
    conclusion = md[md.index("## Conclusion") : md.index("## The lab")]
    assert "For size, keep **int8 x86**: 26.0 % of the base network's size" in conclusion
    assert "For operations, keep **channels remove**: 45.0 % of its operations per sample" in conclusion
    # the share the table's speedup gives (lower quartiles: 8.0 / 1.25 ms), not the medians' 25 %
    assert "For latency, keep **int8 x86**: 15.6 % of its time per batch of 64" in conclusion
    assert "Within noise" in conclusion and "prune-l1 global" in conclusion and "int8 x86" in conclusion
    assert "Significantly less accurate than the base network: narrow 0.5 (+4.00 points)" in conclusion
    assert "an earlier, smaller network +4.00 points" in conclusion
    assert "Caution: the evaluation split is too small for a 1-point budget" in conclusion
    assert "1 row(s) were timed under other conditions" in conclusion and "orthogonal fc1" in conclusion
    assert "prune-l1 retrain=reinit: 96.50 ± 0.50 % over 3 starting points" in conclusion


def test_the_rows_are_grouped_in_the_labs_order_with_intervals(client: TestClient, lab: str) -> None:
    md = client.get("/comparison/report", params={"base_model_id": lab}).text
    lab_part = md[md.index("## The lab") : md.index("## Recommendation")]
    headings = [line[4:] for line in lab_part.splitlines() if line.startswith("### ")]
    assert headings == [
        "Base network",
        "An earlier, smaller network",
        "Orthogonal weights",
        "L1 unstructured pruning",
        "Ln structured pruning (channels)",
        "Post-training int8 (static)",
    ]
    assert r"| int8 x86 | 96.90 \[94.9, 98.4\] | +0.10 | 0.800 | within noise | 26.0 % |" in lab_part
    assert r"| narrow 0.5 | 93.00 \[91.0, 94.5\] | +4.00 | \<0.001 | significantly worse |" in lab_part
    page = client.get("/comparison/report", params={"base_model_id": lab, "format": "html"}).text
    assert "<h2>Conclusion</h2>" in page and "<strong>int8 x86</strong>" in page
    assert page.index("<h3>Base network</h3>") < page.index("<h3>Post-training int8 (static)</h3>")
