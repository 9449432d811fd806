from __future__ import annotations

import json
from pathlib import Path

from cli.main import main


def test_baseline_json_prints_the_row_and_layers(capsys) -> None:
    assert main(["baseline", "--model", "digits-cnn", "--dataset", "digits", "--epochs", "3", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    for key in (
        "n_params",
        "bytes",
        "file_bytes",
        "macs",
        "flops",
        "ops",
        "sparse_macs",
        "accuracy",
        "loss",
        "latency_ms_bs1",
        "latency_ms_bs64",
        "layers",
    ):
        assert key in row
    assert row["n_params"] == 38_282 and row["bytes"] == 4 * 38_282 and row["accuracy"] > 80
    assert [layer["name"] for layer in row["layers"]][0] == "conv1"


def test_measure_a_custom_spec_without_training(tmp_path: Path, capsys) -> None:
    spec = [
        {"name": "conv", "type": "Conv2d", "args": {"in_channels": 1, "out_channels": 2, "kernel_size": 3}},
        {"name": "flat", "type": "Flatten"},
        {"name": "fc", "type": "Linear", "args": {"in_features": 72, "out_features": 3}},
    ]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert main(["measure", "--spec", str(path), "--input-shape", "1,8,8", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["macs"] == 6 * 6 * 9 * 2 + 72 * 3 and row["accuracy"] is None


def test_unknown_model_is_a_clear_error(capsys) -> None:
    assert main(["baseline", "--model", "nope"]) == 2
    assert "unknown architecture 'nope'; valid: digits-cnn" in capsys.readouterr().err
