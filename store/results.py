"""Reads of stored result rows that several places share."""

from __future__ import annotations

from sqlmodel import Session, col, select

from store.tables import BASELINE_TECHNIQUE, ResultRow


def baseline_row(session: Session, base_model_id: str) -> ResultRow | None:
    """The base model's baseline row (the latest, should there be several): its one stored measurement."""
    stmt = (
        select(ResultRow)
        .where(ResultRow.base_model_id == base_model_id, ResultRow.technique == BASELINE_TECHNIQUE)
        .order_by(col(ResultRow.id).desc())
    )
    return session.exec(stmt).first()
