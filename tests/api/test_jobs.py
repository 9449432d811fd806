"""POST/GET/DELETE /jobs: validation, 404s, pagination, filters, cancellation rules."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from store.tables import Job
from tests.api.conftest import EnqueueRecorder
from tests.api.seed import add_job, add_model, add_row


def test_post_job_commits_the_row_before_enqueueing(client: TestClient, recorder: EnqueueRecorder) -> None:
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.5}})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/jobs/{body['id']}"
    assert body["status"] == "queued" and body["technique"] == "prune-l1" and body["progress"] == 0.0
    assert body["steps"] == [{"technique": "prune-l1", "params": {"amount": 0.5}}]
    assert recorder.ids == [body["id"]]
    assert recorder.status_at_enqueue == ["queued"]  # visible to another connection when the id was sent
    detail = client.get(f"/jobs/{body['id']}").json()
    assert detail["status"] == "queued" and detail["rows"] == [] and detail["max_attempts"] == 3


def test_chain_of_steps(client: TestClient) -> None:
    steps = [{"technique": "prune-l1", "params": {"amount": 0.3}}, {"technique": "quantize-dynamic", "params": {}}]
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "steps": steps})
    assert r.status_code == 202, r.text
    assert r.json()["technique"] == "prune-l1 → quantize-dynamic"


def test_param_out_of_range_names_field_and_range(client: TestClient, recorder: EnqueueRecorder) -> None:
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 1.5}})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "params", "amount"]
    assert "amount" in err["msg"]
    assert err["accepted"]["exclusiveMaximum"] == 1.0 and err["accepted"]["minimum"] == 0.0
    assert recorder.ids == []


def test_unknown_param_is_named(client: TestClient) -> None:
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amout": 0.5}})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "params", "amout"]
    assert "amount" in err["accepted"]["fields"]


def test_param_error_inside_a_chain_names_the_step(client: TestClient) -> None:
    steps = [{"technique": "quantize-dynamic"}, {"technique": "prune-l1", "params": {"amount": -1}}]
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "steps": steps})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "steps", 1, "params", "amount"]


def test_search_only_on_the_last_step(client: TestClient) -> None:
    steps = [{"technique": "prune-l1", "params": {"search": True}}, {"technique": "quantize-dynamic"}]
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "steps": steps})
    assert r.status_code == 422
    assert "last step" in r.json()["detail"][0]["msg"]


def test_unknown_technique_lists_valid_names(client: TestClient) -> None:
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "zip-it"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "technique"]
    assert "prune-l1" in err["valid"] and "quantize-int8" in err["valid"]
    assert "zip-it" in err["msg"]


def test_technique_and_steps_together_is_422(client: TestClient) -> None:
    r = client.post(
        "/jobs", json={"base_model_id": "digits-cnn", "technique": "prune-l1", "steps": [{"technique": "prune-l1"}]}
    )
    assert r.status_code == 422
    assert "either 'technique'" in r.text
    r = client.post("/jobs", json={"base_model_id": "digits-cnn"})
    assert r.status_code == 422


def test_unknown_base_model_is_404_listing_existing(client: TestClient) -> None:
    r = client.post("/jobs", json={"base_model_id": "nope", "technique": "prune-l1"})
    assert r.status_code == 404
    assert "nope" in r.json()["detail"] and "digits-cnn" in r.json()["detail"]


def test_malformed_body_is_422_not_500(client: TestClient) -> None:
    assert client.post("/jobs", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": 5}).status_code == 422
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "prune-l1", "params": [1]})
    assert r.status_code == 422


def test_broker_down_at_enqueue_is_202_and_the_job_stays_queued_for_the_reconciler(
    client: TestClient, recorder: EnqueueRecorder, engine: Engine
) -> None:
    recorder.fail = True
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "quantize-dynamic"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and "broker is unreachable" in body["stage"]
    assert r.headers["location"] == f"/jobs/{body['id']}"
    with Session(engine) as s:
        job = s.get(Job, body["id"])
        assert job is not None and job.status == "queued" and "reconciler" in (job.stage or "")


def test_missing_job_is_404(client: TestClient) -> None:
    assert client.get("/jobs/987654").status_code == 404
    assert client.delete("/jobs/987654").status_code == 404
    assert client.get("/jobs/987654/artifact").status_code == 404
    assert client.get("/jobs/not-a-number").status_code == 422


def test_pagination_and_filters(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine)
    ids = [add_job(engine, mid, status="queued", technique="prune-l1") for _ in range(5)]
    ids += [add_job(engine, mid, status="succeeded", technique="quantize-int8") for _ in range(2)]
    ids.append(add_job(engine, mid, status="failed", technique="prune-l1 → quantize-int8"))
    seen: list[int] = []
    for offset in range(0, 8, 3):
        page = client.get("/jobs", params={"base_model_id": mid, "limit": 3, "offset": offset}).json()
        assert page["total"] == 8 and page["limit"] == 3 and page["offset"] == offset
        seen += [j["id"] for j in page["items"]]
    assert seen == sorted(ids, reverse=True)  # newest first, every job once
    by_status = client.get("/jobs", params={"base_model_id": mid, "status": "succeeded"}).json()
    assert by_status["total"] == 2 and {j["status"] for j in by_status["items"]} == {"succeeded"}
    by_tech = client.get("/jobs", params={"base_model_id": mid, "technique": "quantize-int8"}).json()
    assert by_tech["total"] == 3  # two single jobs and the chain that ends with it
    assert client.get("/jobs", params={"base_model_id": mid, "technique": "quantize"}).json()["total"] == 0
    assert client.get("/jobs", params={"status": "finished"}).status_code == 422
    assert client.get("/jobs", params={"limit": 0}).status_code == 422
    assert client.get("/jobs", params={"offset": -1}).status_code == 422
    beyond = client.get("/jobs", params={"base_model_id": mid, "offset": 100}).json()
    assert beyond["items"] == [] and beyond["total"] == 8


def test_cancel_queued_job(client: TestClient, engine: Engine) -> None:
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": "quantize-dynamic"})
    job_id = r.json()["id"]
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def test_cancel_running_job_requests_it(client: TestClient, engine: Engine) -> None:
    job_id = add_job(engine, "digits-cnn", status="running")
    r = client.delete(f"/jobs/{job_id}")
    assert r.status_code == 202
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    with Session(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.cancel_requested and job.status == "running"


def test_cancel_finished_job_is_409(client: TestClient, engine: Engine) -> None:
    for status in ("succeeded", "failed"):
        job_id = add_job(engine, "digits-cnn", status=status)
        r = client.delete(f"/jobs/{job_id}")
        assert r.status_code == 409, status
        assert status in r.json()["detail"]


def test_artifact_rules(client: TestClient, engine: Engine) -> None:
    running = add_job(engine, "digits-cnn", status="running")
    assert client.get(f"/jobs/{running}/artifact").status_code == 409
    done = add_job(engine, "digits-cnn", status="succeeded")
    add_row(engine, done, "digits-cnn", 1, technique="prune-l1", trial=True)
    r = client.get(f"/jobs/{done}/artifact")
    assert r.status_code == 404 and "no stored model" in r.json()["detail"]


def test_job_detail_shows_rows_in_order(client: TestClient, engine: Engine) -> None:
    mid = add_model(engine)
    job_id = add_job(engine, mid)
    add_row(engine, job_id, mid, 2, technique="prune-l1", label="second")
    add_row(engine, job_id, mid, 1, technique="prune-l1", label="first")
    rows = client.get(f"/jobs/{job_id}").json()["rows"]
    assert [r["label"] for r in rows] == ["first", "second"]
    assert rows[0]["has_artifact"] is False


DIGITS_WEIGHTED = {"conv1", "conv2", "fc1", "fc2"}  # digits-cnn's Conv2d/Linear layers


def test_unknown_layer_names_are_a_422_listing_the_valid_ones(client: TestClient, recorder: EnqueueRecorder) -> None:
    """prune-l1 layers ["nope"] used to be accepted and fail in the worker; now the 422 says so at once."""
    r = client.post(
        "/jobs",
        json={"base_model_id": "digits-cnn", "technique": "prune-l1", "params": {"amount": 0.5, "layers": ["nope"]}},
    )
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "params", "layers"] and err["type"] == "unknown_layer"
    assert "prune-l1: unknown layer(s) ['nope']" in err["msg"] and set(err["valid"]) == DIGITS_WEIGHTED
    for name in DIGITS_WEIGHTED:
        assert name in err["msg"]

    for technique, params, field, valid in (
        ("orthogonal", {"layers": ["relu1"]}, "layers", DIGITS_WEIGHTED),
        ("separable", {"layers": ["fc1"]}, "layers", {"conv1", "conv2"}),
        ("prune-channels", {"amount": {"fc2": 0.5}}, "amount", {"conv1", "conv2", "fc1"}),
    ):
        r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": technique, "params": params})
        assert r.status_code == 422, (technique, r.text)
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "params", field] and set(err["valid"]) == valid, (technique, err)

    steps = [{"technique": "quantize-dynamic"}, {"technique": "prune-l1", "params": {"layers": ["fc1", "fc9"]}}]
    r = client.post("/jobs", json={"base_model_id": "digits-cnn", "steps": steps})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "steps", 1, "params", "layers"]
    assert "step 2 (prune-l1): unknown layer(s) ['fc9']" in err["msg"]
    assert recorder.ids == []


def test_valid_layer_names_are_accepted(client: TestClient) -> None:
    ok = [
        ("prune-l1", {"layers": ["fc1", "conv2"]}),
        ("orthogonal", {"layers": ["fc1"]}),
        ("separable", {"layers": ["conv2"]}),
        ("prune-channels", {"amount": {"conv1": 0.5}}),
    ]
    for technique, params in ok:
        r = client.post("/jobs", json={"base_model_id": "digits-cnn", "technique": technique, "params": params})
        assert r.status_code == 202, (technique, r.text)
    # separable renames conv2 to conv2.v + conv2.h: a later step may name the new layers
    steps = [
        {"technique": "separable", "params": {"layers": ["conv2"]}},
        {"technique": "prune-l1", "params": {"layers": ["conv2.v"]}},
    ]
    assert client.post("/jobs", json={"base_model_id": "digits-cnn", "steps": steps}).status_code == 202
