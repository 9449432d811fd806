"""base_models.baseline dropped: a base model's measurement is stored once, as its baseline result row

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ALTER TABLE (SQLite >= 3.35 has DROP COLUMN): a batch copy would drop base_models, which
    # jobs and result_rows reference, and SQLite's foreign keys forbid that once rows exist
    op.drop_column("base_models", "baseline")


def downgrade() -> None:
    """The column back, filled from each base model's latest baseline row (its measurement, layers included)."""
    op.add_column("base_models", sa.Column("baseline", sa.JSON(), nullable=True))
    bind = op.get_bind()
    result_rows = sa.Table("result_rows", sa.MetaData(), autoload_with=bind)
    base_models = sa.Table("base_models", sa.MetaData(), autoload_with=bind)
    skip = {"id", "job_id", "row_index", "base_model_id", "label", "technique", "params", "recipe", "extra"}
    skip |= {"accuracy_drop", "trial", "strength", "seed", "notes", "artifact_path", "created_at"}
    found = bind.execute(
        sa.select(result_rows).where(result_rows.c.technique == "baseline").order_by(result_rows.c.id)
    ).mappings()
    for row in found:  # in id order: the latest baseline row of a model is written last
        measurement = {**(row["extra"] or {}), **{k: v for k, v in row.items() if k not in skip}}
        bind.execute(
            sa.update(base_models).where(base_models.c.id == row["base_model_id"]).values(baseline=measurement)
        )
