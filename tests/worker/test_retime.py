"""POST /models/{id}/retime: every stored network of a base model timed again together, in interleaved rounds,
one session id; afterwards /comparison's speedups all come from that session and nothing is flagged."""

from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import text
from sqlalchemy.engine import Engine

from store.settings import Settings
from tests.api.conftest import EnqueueRecorder, app_client
from tests.api.seed import add_row
from tests.worker.conftest import add_base_model, add_job, job
from worker.execution import execute_job


def test_retime_interleaves_and_makes_every_ratio_comparable(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"retime_rounds": 3, "retime_runs": 2})
    mid = add_base_model(engine, "retimed", epochs=1)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    recorder = EnqueueRecorder(engine)
    with app_client(engine, settings, recorder) as client:
        for params in (
            {"technique": "prune-channels", "params": {"amount": 0.5, "mode": "remove"}},
            {"technique": "quantize-int8", "params": {}},
        ):
            r = client.post("/jobs", json={"base_model_id": mid, **params})
            assert r.status_code == 202, r.text
            assert execute_job(r.json()["id"], engine, settings) == "succeeded"
        trial_job = add_job(engine, mid)
        add_row(engine, trial_job, mid, 1, label="a trial", technique="prune-l1", trial=True)
        with engine.begin() as conn:  # one variant timed under other conditions (as on another worker)
            (row_id, cond) = conn.execute(
                text("SELECT id, latency_conditions FROM result_rows WHERE technique = 'quantize-int8'")
            ).one()
            cond = json.loads(cond) if isinstance(cond, str) else cond
            conn.execute(
                text("UPDATE result_rows SET latency_conditions = :c WHERE id = :i"),
                {"c": json.dumps({**cond, "host": "another-worker"}), "i": row_id},
            )
        before = {r["technique"]: r for r in client.get("/comparison", params={"base_model_id": mid}).json()}
        assert before["quantize-int8"]["speedup_bs64"] is None
        assert "host another-worker vs" in before["quantize-int8"]["latency_note"]

        r = client.post(f"/models/{mid}/retime")
        assert (
            r.status_code == 202 and r.json()["kind"] == "retime" and r.headers["location"] == f"/jobs/{r.json()['id']}"
        )
        retime_id = r.json()["id"]
        assert recorder.ids[-1] == retime_id
        assert execute_job(retime_id, engine, settings) == "succeeded"
        done = client.get(f"/jobs/{retime_id}").json()
        assert done["status"] == "succeeded", done
        notes = done["notes"]

        after = client.get("/comparison", params={"base_model_id": mid, "include_trials": "true"}).json()
        # the very query served (and cached) before the retime: its table shows the retime's figures at once
        again = {r["technique"]: r for r in client.get("/comparison", params={"base_model_id": mid}).json()}
    with engine.connect() as conn:
        stored_ms = dict(conn.execute(text("SELECT technique, latency_ms_bs64 FROM result_rows WHERE NOT trial")).all())
    assert {t: r["latency_ms_bs64"] for t, r in again.items()} == stored_ms
    assert again["quantize-int8"]["speedup_bs64"] is not None and again["quantize-int8"]["latency_note"] is None
    assert json.loads(again["baseline"]["latency_conditions"])["session_id"] == notes["session_id"]
    stored = [r for r in after if not r["trial"]]
    assert len(stored) == 3  # baseline, channels, int8
    for row in stored:
        assert row["speedup_bs64"] is not None and row["latency_note"] is None, row
        assert json.loads(row["latency_conditions"])["session_id"] == notes["session_id"]
        assert row["latency_ms_bs64_p25"] <= row["latency_ms_bs64"] <= row["latency_ms_bs64_p75"]
        assert row["ort_latency_ms_bs64"] is not None  # every one of these exports to ONNX
    (trial,) = [r for r in after if r["trial"]]
    assert trial["speedup_bs64"] is None and "other conditions" in trial["latency_note"]  # not re-timed: flagged
    assert [s["label"] for s in notes["skipped"]] == ["a trial"]
    # interleaved: each of the 3 rounds visits every network once, each round starting one further along
    order = notes["order"]
    assert notes["rounds"] == 3 and len(order) == 9
    assert Counter(r for r, _ in order) == {0: 3, 1: 3, 2: 3}
    firsts = [ids for ids in ([k for r, k in order if r == n] for n in range(3))]
    assert all(sorted(f) == sorted(firsts[0]) for f in firsts)
    assert firsts[1] == firsts[0][1:] + firsts[0][:1] and firsts[2] == firsts[0][2:] + firsts[0][:2]


def test_retime_refuses_unknown_and_untrained_models(engine: Engine, settings: Settings) -> None:
    add_base_model(engine, "never-trained")
    with app_client(engine, settings, EnqueueRecorder(engine)) as client:
        assert client.post("/models/nope/retime").status_code == 404
        r = client.post("/models/never-trained/retime")
        assert r.status_code == 409 and "untrained" in r.json()["detail"]


def test_a_retime_cancelled_before_it_starts_never_runs(engine: Engine, settings: Settings) -> None:
    mid = add_base_model(engine, "retime-cancel", epochs=1)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    with app_client(engine, settings, EnqueueRecorder(engine)) as client:
        jid = client.post(f"/models/{mid}/retime").json()["id"]
        assert client.delete(f"/jobs/{jid}").status_code == 200
    assert execute_job(jid, engine, settings) == "skipped"
    assert job(engine, jid).status == "cancelled"


def test_a_retime_sent_again_with_its_key_answers_the_first_job(engine: Engine, settings: Settings) -> None:
    settings = settings.model_copy(update={"retime_rounds": 1, "retime_runs": 1})
    mid = add_base_model(engine, "retime-replay", epochs=1)
    assert execute_job(add_job(engine, mid, kind="train"), engine, settings) == "succeeded"
    recorder = EnqueueRecorder(engine)
    key = {"Idempotency-Key": "retime-replay-1"}
    with app_client(engine, settings, recorder) as client:
        first = client.post(f"/models/{mid}/retime", headers=key)
        assert first.status_code == 202 and "idempotent-replayed" not in first.headers
        again = client.post(f"/models/{mid}/retime", headers=key)
        assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"] and recorder.ids == [first.json()["id"]]  # sent once
        assert execute_job(first.json()["id"], engine, settings) == "succeeded"
        done = client.post(f"/models/{mid}/retime", headers=key)  # the first job has finished meanwhile
        assert done.headers["idempotent-replayed"] == "true"
        assert done.json()["id"] == first.json()["id"] and done.json()["status"] == "succeeded"
        assert recorder.ids == [first.json()["id"]]
