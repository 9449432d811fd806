"""/comparison and the front are cached per base model until its result rows change."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.decision_service import rows_with_front
from tests.api.seed import add_job, add_model, add_row


def test_a_new_row_shows_at_once(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine)
    base = add_job(engine, mid, technique="baseline")
    add_row(engine, base, mid, 0)
    params = {"base_model_id": mid}
    first = client.get("/comparison", params=params).json()
    assert [r["label"] for r in first] == ["baseline"]
    assert client.get("/comparison", params=params).json() == first
    csv_before = client.get("/comparison", params={**params, "format": "csv"}).text
    job = add_job(engine, mid)
    add_row(engine, job, mid, 0, technique="prune-l1", label="smaller", bytes=1000, ops=300, accuracy=96.0)
    after = client.get("/comparison", params=params).json()
    assert [(r["label"], r["pareto"]) for r in after] == [("baseline", False), ("smaller", True)]
    assert "smaller" in client.get("/comparison", params={**params, "format": "csv"}).text
    assert "smaller" not in csv_before
    # the recommendation reads the same (cached) table
    rec = client.get("/recommendation", params=params).json()
    assert rec["chosen"]["label"] == "smaller"


def test_callers_get_their_own_rows(engine: Engine) -> None:
    mid = add_model(engine)
    add_row(engine, add_job(engine, mid, technique="baseline"), mid, 0)
    with Session(engine) as s:
        rows = rows_with_front(s, mid, False)
        rows[0]["label"] = "changed"
        rows.append({})
        assert [r["label"] for r in rows_with_front(s, mid, False)] == ["baseline"]


def test_a_cached_comparison_is_one_query(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine)
    add_row(engine, add_job(engine, mid, technique="baseline"), mid, 0)
    params = {"base_model_id": mid}
    first = client.get("/comparison", params=params)
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        again = client.get("/comparison", params=params)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert again.status_code == 200 and again.content == first.content
    assert len(statements) == 1, statements
    unknown = client.get("/comparison", params={"base_model_id": "ghost"})
    assert unknown.status_code == 404 and mid in unknown.json()["detail"]
