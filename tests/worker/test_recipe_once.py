"""One row per recipe: the same steps, params (defaults filled) and seed on the same base model are answered
from the table, unless the request says "rerun": true."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from store.settings import Settings
from tests.api.conftest import EnqueueRecorder, app_client
from tests.worker.conftest import add_base_model, add_job
from worker.execution import execute_job


def test_the_same_recipe_is_answered_from_the_table(engine: Engine, settings: Settings) -> None:
    mid = add_base_model(engine, "recipes", epochs=1)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    recorder = EnqueueRecorder(engine)
    with app_client(engine, settings, recorder) as client:
        first = client.post("/jobs", json={"base_model_id": mid, "technique": "prune-l1", "params": {"amount": 0.5}})
        assert first.status_code == 202 and first.json()["status"] == "queued"
        first_id = first.json()["id"]
        # not yet succeeded: a twin posted now is queued too (only a succeeded recipe answers)
        queued_twin = client.post(
            "/jobs", json={"base_model_id": mid, "technique": "prune-l1", "params": {"amount": 0.5}}
        )
        assert queued_twin.json()["status"] == "queued"
        assert client.delete(f"/jobs/{queued_twin.json()['id']}").status_code == 200
        assert execute_job(first_id, engine, settings) == "succeeded"
        first_rows = client.get(f"/jobs/{first_id}").json()["rows"]
        sent = list(recorder.ids)

        # the same recipe, written with its defaults explicit: answered at once, nothing sent to the workers
        same = {"amount": 0.5, "seed": 0, "scope": "layer"}
        r = client.post("/jobs", json={"base_model_id": mid, "technique": "prune-l1", "params": same})
        assert r.status_code == 202, r.text
        answered = r.json()
        assert answered["status"] == "succeeded" and answered["notes"] == {"answered_by_job": first_id}
        assert f"answered from job {first_id}" in answered["stage"]
        assert [x["label"] for x in answered["rows"]] == [x["label"] for x in first_rows]
        assert recorder.ids == sent
        assert client.get(f"/jobs/{answered['id']}").json()["rows"] == first_rows
        assert (
            client.get(f"/jobs/{answered['id']}/artifact").content == client.get(f"/jobs/{first_id}/artifact").content
        )
        labels = [x["label"] for x in client.get("/comparison", params={"base_model_id": mid}).json()]
        assert labels.count(first_rows[0]["label"]) == 1  # one row per recipe in the table

        # "rerun": true runs it again; another seed is another recipe
        again = client.post(
            "/jobs", json={"base_model_id": mid, "technique": "prune-l1", "params": {"amount": 0.5}, "rerun": True}
        )
        assert again.json()["status"] == "queued" and recorder.ids[-1] == again.json()["id"]
        other = client.post(
            "/jobs", json={"base_model_id": mid, "technique": "prune-l1", "params": {"amount": 0.5, "seed": 1}}
        )
        assert other.json()["status"] == "queued" and recorder.ids[-1] == other.json()["id"]
