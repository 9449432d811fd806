"""`alembic upgrade head` on PostgreSQL creates exactly the SQLModel schema, and downgrades cleanly."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from store.db import create_engine, metadata
from store.migrate import downgrade_base, upgrade_head
from tests.integration.conftest import PG_URL

pytestmark = pytest.mark.integration


def test_migrations_on_postgres(postgres_schema: str) -> None:
    assert postgres_schema == PG_URL
    upgrade_head(PG_URL)
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            assert {"base_models", "jobs", "result_rows"} <= set(inspect(conn).get_table_names())
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            assert conn.execute(text("SELECT preset FROM base_models WHERE id = 'digits-cnn'")).scalar() is True
        downgrade_base(PG_URL)
        with engine.connect() as conn:
            assert "jobs" not in inspect(conn).get_table_names()
        upgrade_head(PG_URL)
    finally:
        engine.dispose()
