"""bench.run_all's repetitions: each target is the median of its interleaved repetitions, with the range, and
PASS/FAIL is judged on that median (one lucky or unlucky run decides nothing)."""

from __future__ import annotations

from bench.common import Target, merge_repeats


def test_median_and_range_and_verdict_on_the_median() -> None:
    runs = [
        [Target("2", "int8 bs64", "4.10×", "≥ 4×", True), Target("1", "overhead", "1.20×", "≤ 1.05×", False)],
        [Target("2", "int8 bs64", "3.90×", "≥ 4×", False), Target("1", "overhead", "1.01×", "≤ 1.05×", True)],
        [Target("2", "int8 bs64", "4.30×", "≥ 4×", True), Target("1", "overhead", "1.02×", "≤ 1.05×", True)],
    ]
    int8, overhead = merge_repeats(runs)
    assert int8.measured == "4.100× (3.900–4.300, n=3)" and int8.ok is True
    assert overhead.measured == "1.020× (1.010–1.200, n=3)" and overhead.ok is True
    assert "median of 3" in int8.note or int8.note == ""


def test_a_failing_median_fails_and_unmeasured_stays_unjudged() -> None:
    runs = [
        [Target("3", "channels", f"{v}×", "≥ 3×", True), Target("5", "diag", "—", "—", None)] for v in (2.8, 2.9, 3.1)
    ]
    channels, diag = merge_repeats(runs)
    assert channels.ok is False and channels.measured.startswith("2.900×")
    assert diag.ok is None and diag.measured == "—"
