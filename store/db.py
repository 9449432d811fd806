"""Engine and session: SQLite (WAL, busy timeout) by default, PostgreSQL through the URL."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, MetaData, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel

from store.settings import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLModel.metadata.naming_convention = NAMING_CONVENTION
metadata: MetaData = SQLModel.metadata

SQLITE_BUSY_TIMEOUT_MS = 30_000
LOCKED_RETRIES = 5
PG_CONNECT_TIMEOUT_S = 5

T = TypeVar("T")
log = logging.getLogger("netreduce.db")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


POOL_TIMEOUT_S = 10


def _pool_options() -> dict[str, Any]:
    """A connection for each of the API's database slots, two more (health check, a spare) and some overflow
    for the worker's threads; a pool time-out is an error the API answers 503."""
    slots = get_settings().db_slots
    return {"pool_size": slots + 2, "max_overflow": 10, "pool_timeout": POOL_TIMEOUT_S}


def create_engine(url: str, **options: Any) -> Engine:
    """An engine for ``url``; a SQLite file's folder is created, WAL and busy timeout set per connection.

    ``options`` go to SQLAlchemy (e.g. ``poolclass=NullPool`` for a thread that must hold no
    connection between its passes).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        if parsed.database and parsed.database != ":memory:" and "poolclass" not in options:
            options = {**_pool_options(), **options}
        engine = sa_create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if "poolclass" not in options:
        options = {**_pool_options(), **options}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg2":
        options.setdefault("connect_args", {"connect_timeout": PG_CONNECT_TIMEOUT_S})
    return sa_create_engine(url, pool_pre_ping=True, **options)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    return create_engine(url)


def get_engine() -> Engine:
    """The process-wide engine for the configured database URL."""
    return engine_for(get_settings().database_url)


def get_session() -> Iterator[Session]:
    """FastAPI dependency: one session per request; routes commit explicitly."""
    with Session(get_engine()) as session:
        yield session


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "database table is locked" (the busy timeout ran out)."""
    return isinstance(exc, OperationalError) and "is locked" in str(exc.orig or exc)


def write(engine: Engine, work: Callable[[Connection], T], retries: int = LOCKED_RETRIES) -> T:
    """Run ``work`` in one short write transaction and commit it.

    On SQLite the transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock first (waiting
    up to the busy timeout), so a read inside ``work`` followed by a write can never find its snapshot
    outdated, the one case where SQLite gives up at once instead of waiting. A transaction that still
    meets "database is locked" is rolled back and run again, up to ``retries`` times, as a last resort.
    """
    sqlite = engine.dialect.name == "sqlite"
    for attempt in range(retries + 1):
        try:
            with engine.connect() as conn:
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                result = work(conn)
                conn.commit()
                return result
        except OperationalError as exc:
            if not (sqlite and is_locked(exc)) or attempt == retries:
                raise
            pause = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
            log.warning("database is locked; retrying a write in %.2f s (%d/%d)", pause, attempt + 1, retries)
            time.sleep(pause)
    raise AssertionError("unreachable")
