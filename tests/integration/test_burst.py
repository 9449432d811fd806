"""A crowd at once on a real uvicorn: every answer is 202 or 503 in bounded time, a job exists for every 202
and for nothing else, /healthz keeps answering; a slow client does not hold up the others.

Before the request path was fixed, 200 simultaneous ``POST /jobs`` got ~120 × 500 (pool time-out) and
~80 time-outs while 41-47 jobs were created, and /healthz did not answer for 100 s.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from store.db import create_engine
from store.migrate import upgrade_head
from tests.integration.conftest import Proc, child_env, free_port, uvicorn_cmd, wait_healthy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CLIENTS = 200
ANSWER_WITHIN_S = 60.0
"""Bound on every answer: the slot wait (NETREDUCE_DB_WAIT_S, 10 s by default) plus generous slack on 2 cores."""


def start_api(tmp: Path, procs: list[Proc], database_url: str, broker_url: str, **settings: str) -> str:
    upgrade_head(database_url)
    port = free_port()
    env = child_env(
        database_url=database_url,
        broker_url=broker_url,
        artifact_dir=str(tmp / "artifacts"),
        queue=f"burst-{port}",
        **settings,
    )
    procs.append(Proc("api", uvicorn_cmd(port), env, tmp))
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, procs)
    return base


Answers = list[tuple[int, float, dict[str, str]]]


async def burst(base: str, n: int) -> tuple[Answers, Answers, list[tuple[int, float]]]:
    """``n`` clients, one connection each, all connected before any sends, POST a job each, then all read one
    job at once; /healthz polled meanwhile."""
    clients = [httpx.AsyncClient(base_url=base, timeout=ANSWER_WITHIN_S + 30) for _ in range(n)]
    health: list[tuple[int, float]] = []
    done = asyncio.Event()

    async def poll_health() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as c:
            while not done.is_set():
                t0 = time.monotonic()
                try:
                    code = (await c.get("/healthz")).status_code
                except httpx.HTTPError:
                    code = 0
                health.append((code, time.monotonic() - t0))
                await asyncio.sleep(0.2)

    async def post(i: int, c: httpx.AsyncClient) -> tuple[int, float, dict[str, str]]:
        body = {"base_model_id": "digits-cnn", "technique": "quantize-dynamic", "params": {"seed": i}}
        t0 = time.monotonic()
        try:
            r = await c.post("/jobs", json=body)
            return r.status_code, time.monotonic() - t0, dict(r.headers)
        except httpx.HTTPError as exc:
            return 0, time.monotonic() - t0, {"error": repr(exc)}

    async def read(c: httpx.AsyncClient, job_id: int) -> tuple[int, float, dict[str, str]]:
        t0 = time.monotonic()
        try:
            r = await c.get(f"/jobs/{job_id}")
            return r.status_code, time.monotonic() - t0, dict(r.headers)
        except httpx.HTTPError as exc:
            return 0, time.monotonic() - t0, {"error": repr(exc)}

    try:
        await asyncio.gather(*(c.get("/openapi.json") for c in clients))  # every connection open first
        poller = asyncio.create_task(poll_health())
        answers = await asyncio.gather(*(post(i, c) for i, c in enumerate(clients)))
        made = [int(h["location"].rsplit("/", 1)[1]) for code, _, h in answers if code == 202]
        reads = await asyncio.gather(*(read(c, made[0]) for c in clients)) if made else []
        done.set()
        await poller
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return list(answers), list(reads), health


def check_burst(base: str, database_url: str, expect_503: bool) -> None:
    answers, reads, health = asyncio.run(burst(base, CLIENTS))
    codes = [code for code, _, _ in answers]
    assert set(codes) <= {202, 503}, sorted(set(codes))
    read_codes = [code for code, _, _ in reads]
    assert set(read_codes) <= {200, 503}, sorted(set(read_codes))
    assert max(t for _, t, _ in answers + reads) < ANSWER_WITHIN_S
    for code, _, headers in answers + reads:
        if code == 503:
            assert int(headers["retry-after"]) >= 1
    accepted = codes.count(202)
    engine = create_engine(database_url)
    with engine.connect() as conn:
        jobs = conn.execute(text("SELECT count(*) FROM jobs WHERE kind = 'compress'")).scalar()
    engine.dispose()
    assert jobs == accepted, f"{jobs} jobs for {accepted} answers of 202"
    if expect_503:
        assert 0 < accepted < CLIENTS, codes
    else:
        assert accepted == CLIENTS, f"{codes.count(503)} of {CLIENTS} answered 503 with the default bounds"
        assert read_codes.count(200) == CLIENTS, f"{read_codes.count(503)} reads answered 503"
    assert health and all(code == 200 for code, _ in health), health
    assert max(t for _, t in health) < 5.0, health


@pytest.fixture
def sqlite_urls(tmp_path: Path) -> tuple[str, str]:
    return f"sqlite:///{tmp_path}/netreduce.db", f"sqla+sqlite:///{tmp_path}/broker.db"


def test_burst_on_sqlite(tmp_path: Path, procs: list[Proc], sqlite_urls: tuple[str, str]) -> None:
    base = start_api(tmp_path, procs, *sqlite_urls)
    check_burst(base, sqlite_urls[0], expect_503=False)


def test_burst_past_the_bounds_is_503_and_leaves_no_job(
    tmp_path: Path, procs: list[Proc], sqlite_urls: tuple[str, str]
) -> None:
    base = start_api(tmp_path, procs, *sqlite_urls, db_slots="1", db_max_waiting="10", db_wait_s="2")
    check_burst(base, sqlite_urls[0], expect_503=True)


def test_burst_on_postgres_and_redis(
    tmp_path: Path, procs: list[Proc], own_postgres_schema: str, redis_db: str
) -> None:
    base = start_api(tmp_path, procs, own_postgres_schema, redis_db)
    check_burst(base, own_postgres_schema, expect_503=False)


@pytest.fixture
def stalled_sockets() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def test_slow_clients_do_not_hold_up_the_others(
    tmp_path: Path, procs: list[Proc], sqlite_urls: tuple[str, str], stalled_sockets: list[socket.socket]
) -> None:
    """50 clients send headers and half a body, then stall: the API still answers everyone else at once."""
    base = start_api(tmp_path, procs, *sqlite_urls)
    port = int(base.rsplit(":", 1)[1])
    body = b'{"base_model_id": "digits-cnn", "technique": "quantize-dynamic", "params": {}}'
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]
        )
        stalled_sockets.append(s)
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(20):
            t0 = time.monotonic()
            r = c.post(
                "/jobs", json={"base_model_id": "digits-cnn", "technique": "quantize-dynamic", "params": {"seed": i}}
            )
            assert r.status_code == 202, r.text
            assert time.monotonic() - t0 < 10.0  # a server waiting on the stalled bodies would time out here
            assert c.get("/healthz").status_code == 200
    engine = create_engine(sqlite_urls[0])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE kind = 'compress'")).scalar() == 20
    engine.dispose()
