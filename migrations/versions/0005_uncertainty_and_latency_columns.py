"""result_rows: accuracy interval, paired test, latency spread and conditions, onnxruntime latency; jobs.notes

Measurement fields kept until now in a row's ``extra`` JSON (``eval_samples``, the Wilson interval, torch threads,
latency conditions) and the paired test kept in its ``notes`` (``drop_p_value``, ``drop_significant``) get
columns of their own, filled from where they were.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FROM_EXTRA = ("eval_samples", "accuracy_ci_low", "accuracy_ci_high", "torch_threads", "latency_conditions")
FROM_NOTES = ("drop_p_value", "drop_significant")
NEW_COLUMNS = (
    ("eval_samples", sa.BigInteger()),
    ("accuracy_ci_low", sa.Float()),
    ("accuracy_ci_high", sa.Float()),
    ("drop_p_value", sa.Float()),
    ("drop_significant", sa.Boolean()),
    ("torch_threads", sa.BigInteger()),
    ("latency_ms_bs1_p25", sa.Float()),
    ("latency_ms_bs1_p75", sa.Float()),
    ("latency_ms_bs64_p25", sa.Float()),
    ("latency_ms_bs64_p75", sa.Float()),
    ("latency_conditions", sa.JSON()),
    ("ort_latency_ms_bs1", sa.Float()),
    ("ort_latency_ms_bs64", sa.Float()),
)


def upgrade() -> None:
    # plain ALTER TABLE ADD COLUMN (no batch copy: base_models and jobs are referenced by foreign keys)
    for name, type_ in NEW_COLUMNS:
        op.add_column("result_rows", sa.Column(name, type_, nullable=True))
    op.add_column("jobs", sa.Column("notes", sa.JSON(), nullable=True))
    bind = op.get_bind()
    rows = sa.Table("result_rows", sa.MetaData(), autoload_with=bind)
    found = bind.execute(sa.select(rows.c.id, rows.c.extra, rows.c.notes)).mappings().all()
    for row in found:
        extra, notes = dict(row["extra"] or {}), dict(row["notes"] or {})
        values = {k: extra.pop(k) for k in FROM_EXTRA if k in extra}
        values |= {k: notes.pop(k) for k in FROM_NOTES if k in notes}
        if values:
            bind.execute(sa.update(rows).where(rows.c.id == row["id"]).values(**values, extra=extra, notes=notes))


def downgrade() -> None:
    bind = op.get_bind()
    rows = sa.Table("result_rows", sa.MetaData(), autoload_with=bind)
    found = bind.execute(sa.select(rows)).mappings().all()
    for row in found:
        extra = {**(row["extra"] or {}), **{k: row[k] for k in FROM_EXTRA if row[k] is not None}}
        notes = {**(row["notes"] or {}), **{k: row[k] for k in FROM_NOTES if row[k] is not None}}
        bind.execute(sa.update(rows).where(rows.c.id == row["id"]).values(extra=extra, notes=notes))
    op.drop_column("jobs", "notes")
    for name, _ in reversed(NEW_COLUMNS):
        op.drop_column("result_rows", name)
