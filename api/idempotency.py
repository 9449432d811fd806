"""``Idempotency-Key`` on ``POST /jobs``, ``POST /models`` and ``POST /models/{id}/retime``: a client that timed out
may post again.

The key is stored in the same transaction as what the request created, so a retry finds either
nothing (the first attempt left nothing behind: it is made now) or the job / model made the first
time (answered again, ``Idempotent-Replayed: true``). A key sent again with another body is refused
(422): it would otherwise silently answer a different request.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.service_errors import unprocessable
from store.tables import IdempotencyKey, utcnow


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(session: Session, scope: str, key: str, fp: str) -> IdempotencyKey | None:
    row = session.get(IdempotencyKey, (scope, key))
    if row is not None and row.fingerprint != fp:
        raise unprocessable(
            ["header", "Idempotency-Key"],
            "this Idempotency-Key was already used with a different request body; use a new key",
            "idempotency_key_reused",
        )
    return row


def create_once(
    session: Session,
    scope: str,
    key: str | None,
    payload: Any,
    create: Callable[[Session], tuple[int | None, str | None]],
) -> tuple[int | None, str | None, bool]:
    """``(job_id, model_id, replayed)``: what ``create`` made (it must not commit), committed together with the
    key; or, for a key seen before with the same body, what the first request made."""
    if key is None:
        job_id, model_id = create(session)
        session.commit()
        return job_id, model_id, False
    fp = fingerprint(payload)
    seen = _replay(session, scope, key, fp)
    if seen is not None:
        return seen.job_id, seen.model_id, True
    job_id, model_id = create(session)
    session.add(
        IdempotencyKey(scope=scope, key=key, fingerprint=fp, job_id=job_id, model_id=model_id, created_at=utcnow())
    )
    try:
        session.commit()
    except IntegrityError:  # the same key committed meanwhile by a concurrent request (another API process)
        session.rollback()
        seen = _replay(session, scope, key, fp)
        if seen is None:
            raise
        return seen.job_id, seen.model_id, True
    return job_id, model_id, False
