"""The server-less brokers poll every NETREDUCE_BROKER_POLL_S seconds, not kombu's default second."""

from __future__ import annotations

from pathlib import Path

import kombu.transport.sqlalchemy
import kombu.transport.virtual
import pytest
from kombu import Connection

from store.queue import broker_transport_options
from store.settings import Settings
from worker.celery_app import make_celery


@pytest.fixture
def restore_sqla_polling():  # noqa: ANN201
    before = kombu.transport.sqlalchemy.Transport.polling_interval
    yield
    kombu.transport.sqlalchemy.Transport.polling_interval = before


def test_sqla_broker_polls_at_the_setting(tmp_path: Path, restore_sqla_polling: None) -> None:
    settings = Settings(broker_url=f"sqla+sqlite:///{tmp_path}/broker.db", broker_poll_s=0.05)
    app = make_celery(settings)
    assert "polling_interval" not in app.conf.broker_transport_options  # create_engine would reject it
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.transport.polling_interval == 0.05
        conn.default_channel  # noqa: B018  (create_engine with the transport options still works)
    assert kombu.transport.virtual.Transport.polling_interval == 1.0  # only the SQLAlchemy transport


def test_filesystem_broker_gets_it_as_a_transport_option(tmp_path: Path) -> None:
    settings = Settings(broker_url="filesystem://", broker_poll_s=0.2)
    options = broker_transport_options(settings)
    assert options == {"polling_interval": 0.2}
    folders = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path)}
    with Connection("filesystem://", transport_options={**options, **folders}) as conn:
        assert conn.transport.polling_interval == 0.2


def test_redis_ignores_it() -> None:
    assert "polling_interval" not in broker_transport_options(Settings(broker_url="redis://localhost:6379/0"))
