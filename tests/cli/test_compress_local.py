"""``netreduce compress``: one job in this process, rows with /comparison's fields, base model cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.comparison_table import CSV_COLUMNS
from cli.main import main

REPO = Path(__file__).resolve().parents[2]


def _args(cache: Path, technique: str, params: str, *extra: str) -> list[str]:
    return [
        "compress",
        "--model",
        "digits-cnn",
        "--dataset",
        "digits",
        "--technique",
        technique,
        "--params",
        params,
        "--epochs",
        "2",
        "--latency-runs",
        "3",
        "--calibration-samples",
        "200",
        "--cache-dir",
        str(cache),
        *extra,
    ]


def test_subprocess_prints_baseline_and_variant_rows_as_comparison_json(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", *_args(tmp_path, "prune-l1", '{"amount": 0.5}'), "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [list(r) for r in rows] == [list(CSV_COLUMNS)] * 2  # /comparison's fields, in its order
    base, pruned = rows
    assert base["technique"] == "baseline" and base["size_ratio"] == 1.0 and base["accuracy"] > 50
    assert pruned["technique"] == "prune-l1" and pruned["params"] == {"amount": 0.5}
    assert pruned["macs"] == base["macs"] and pruned["sparse_macs"] < 0.6 * base["sparse_macs"]
    assert pruned["accuracy_drop"] == pytest.approx(base["accuracy"] - pruned["accuracy"], abs=1e-3)
    assert pruned["drop_p_value"] is not None and pruned["speedup_bs64"] is not None
    assert pruned["torch_threads"] == base["torch_threads"]
    assert len(list(tmp_path.glob("digits-cnn-e2-s0-*.safetensors"))) == 1  # the base model is cached


def test_in_process_reuses_the_cached_base_model_and_quantizes(tmp_path: Path, capsys) -> None:
    assert main([*_args(tmp_path, "prune-l1", '{"amount": 0.3}'), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    cached = list(tmp_path.glob("*.safetensors"))
    mtime = cached[0].stat().st_mtime_ns
    assert main([*_args(tmp_path, "quantize-int8", "{}"), "--json"]) == 0
    base, int8 = json.loads(capsys.readouterr().out)
    assert cached[0].stat().st_mtime_ns == mtime  # loaded, not retrained
    assert base["accuracy"] == first[0]["accuracy"] and base["bytes"] == first[0]["bytes"]
    assert int8["technique"] == "quantize-int8" and 0.2 < int8["size_ratio"] < 0.3
    assert int8["accuracy_drop"] < 5


def test_table_output_and_user_errors(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich's width when stdout is not a terminal
    assert main(_args(tmp_path, "prune-l1", '{"amount": 0.5}')) == 0
    out = capsys.readouterr().out
    assert "baseline" in out and "prune-l1 amount=0.5" in out
    assert main(_args(tmp_path, "no-such-technique", "{}")) == 2
    assert "prune-l1" in capsys.readouterr().err  # the valid names are listed
    assert main(_args(tmp_path, "prune-l1", '{"amount": 7}')) == 2
    assert "amount" in capsys.readouterr().err
    assert main(_args(tmp_path, "prune-l1", "[1]")) == 2
    assert "JSON object" in capsys.readouterr().err
