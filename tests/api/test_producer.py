"""The API sends job ids with a producer of its own: no worker code in its process, the worker's broker settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from store.queue import RUN_JOB, producer_for
from store.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_api_imports_nothing_from_the_worker() -> None:
    code = "import sys, api.main; print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_job_id_sent_by_the_api_reaches_the_workers_queue(tmp_path: Path) -> None:
    from worker.celery_app import make_celery

    settings = Settings(broker_url=f"sqla+sqlite:///{tmp_path}/broker.db", queue="producer-test")
    producer = producer_for(settings)
    assert producer is producer_for(settings)  # one per broker and queue, its connections pooled
    worker_app = make_celery(settings)
    for key in ("task_default_queue", "task_serializer", "broker_transport_options", "task_publish_retry_policy"):
        assert producer.app.conf[key] == worker_app.conf[key], key
    producer.send(42)
    with worker_app.connection_for_read() as conn:
        queue = conn.SimpleQueue("producer-test")
        message = queue.get(timeout=10)
        assert message.headers["task"] == RUN_JOB and message.decode()[0] == [42]
        message.ack()
        queue.close()
