"""idempotency_keys (a retried POST gets the same job); stored JSON values repaired to be JSON-safe

Rows stored before requests were checked may hold a lone surrogate ("\\udfff") or a non-finite number
in a JSON column: reading such a row failed. They are rewritten with ``store.json_safe.repaired``
(bad characters kept as visible escapes, non-finite numbers as null).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 16:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from store.json_safe import find_problem, repaired

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_COLUMNS = {
    "base_models": ["architecture", "spec", "input_shape", "training", "baseline"],
    "jobs": ["steps"],
    "result_rows": ["params", "recipe", "notes", "layers", "extra"],
}


def repair_json_columns() -> None:
    bind = op.get_bind()
    for name, columns in JSON_COLUMNS.items():
        table = sa.table(name, sa.column("id"), *[sa.column(c, sa.JSON) for c in columns])
        for row in bind.execute(sa.select(table)).mappings().all():
            changes = {c: repaired(row[c]) for c in columns if find_problem(row[c])}
            if changes:
                bind.execute(table.update().where(table.c.id == row["id"]).values(**changes))


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("model_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_idempotency_keys_job_id_jobs")),
        sa.ForeignKeyConstraint(
            ["model_id"], ["base_models.id"], name=op.f("fk_idempotency_keys_model_id_base_models")
        ),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    repair_json_columns()


def downgrade() -> None:
    op.drop_table("idempotency_keys")
