"""The schema comes only from `alembic upgrade head`, and matches the SQLModel tables."""

from __future__ import annotations

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
