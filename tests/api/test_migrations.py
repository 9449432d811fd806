"""The schema comes only from `alembic upgrade head`, and matches the SQLModel tables."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from store.db import create_engine, metadata
from store.migrate import downgrade_base, upgrade_head


def test_upgrade_downgrade_upgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sub/fresh.db"
    upgrade_head(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert {"base_models", "jobs", "result_rows", "alembic_version"} <= set(inspect(conn).get_table_names())
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], diff
        uniques = inspect(conn).get_unique_constraints("result_rows")
        assert [u["column_names"] for u in uniques] == [["job_id", "row_index"]]
        cols = {c["name"] for c in inspect(conn).get_columns("jobs")}
        assert {"attempts", "max_attempts", "lease_token", "heartbeat_at", "cancel_requested"} <= cols
        assert conn.execute(text("SELECT status FROM base_models WHERE id='digits-cnn'")).scalar() == "untrained"
    engine.dispose()
    downgrade_base(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
    engine.dispose()
    upgrade_head(url)
    upgrade_head(url)  # idempotent: already at head


def test_0005_moves_measurements_out_of_extra_and_notes_into_their_columns(tmp_path: Path) -> None:
    """Rows written before 0005 kept the interval, threads and conditions in ``extra`` and the paired test in
    ``notes``; after the upgrade they are columns (and back on downgrade)."""
    from alembic import command

    from store.migrate import alembic_config

    url = f"sqlite:///{tmp_path}/old.db"
    command.upgrade(alembic_config(url), "0004")
    engine = create_engine(url)
    conditions = {"torch_threads": 1, "host": "h", "session_id": None}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, base_model_id, technique, status, progress, cancel_requested, attempts,"
                " max_attempts, created_at) VALUES (1, 'train', 'digits-cnn', 'train', 'succeeded', 1, 0, 0, 3,"
                " '2026-12-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO result_rows (id, job_id, row_index, base_model_id, label, technique, n_params, bytes,"
                " macs, flops, ops, sparse_macs, trial, seed, extra, notes, created_at) VALUES (1, 1, 1, 'digits-cnn',"
                " 'x', 'prune-l1', 1, 4, 1, 2, 1, 1, 0, 0, :extra, :notes, '2026-12-01')"
            ),
            {
                "extra": json.dumps(
                    {
                        "eval_samples": 359,
                        "accuracy_ci_low": 90.5,
                        "accuracy_ci_high": 95.25,
                        "torch_threads": 1,
                        "latency_conditions": conditions,
                        "loss": 0.1,
                    }
                ),
                "notes": json.dumps({"drop_p_value": 0.25, "drop_significant": False, "paired_test": {"b": 1}}),
            },
        )
    engine.dispose()
    upgrade_head(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM result_rows WHERE id = 1")).mappings().one()
        assert (row["eval_samples"], row["accuracy_ci_low"], row["accuracy_ci_high"]) == (359, 90.5, 95.25)
        assert (row["drop_p_value"], row["drop_significant"], row["torch_threads"]) == (0.25, 0, 1)
        assert json.loads(row["latency_conditions"]) == conditions
        assert json.loads(row["extra"]) == {"loss": 0.1}
        assert json.loads(row["notes"]) == {"paired_test": {"b": 1}}
    engine.dispose()
    command.downgrade(alembic_config(url), "0004")
    engine = create_engine(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT extra, notes FROM result_rows WHERE id = 1")).mappings().one()
        assert json.loads(row["extra"])["eval_samples"] == 359
        assert json.loads(row["notes"])["drop_p_value"] == 0.25
    engine.dispose()
