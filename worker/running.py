"""Around a running job: its heartbeat thread, its throttled progress reporter, its temporary folder."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from store.jobs import Lease

log = logging.getLogger("netreduce.worker")


class Heartbeat:
    """A daemon thread that stamps the job's ``heartbeat_at`` every ``interval_s`` while it runs.

    The write is guarded by the lease: once the job is no longer ours (the reaper gave it to another
    worker, or it was cancelled) the thread stops and ``lost`` is set. A failed write (the database
    restarting) is logged and tried again at the next beat.
    """

    def __init__(self, lease: Lease, interval_s: float) -> None:
        self.lease, self.interval_s = lease, interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-job-{lease.job_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.lease.beat():
                    self.lost.set()
                    return
            except Exception as exc:
                log.warning("job %s: heartbeat not written: %s", self.lease.job_id, str(exc).splitlines()[0][:200])

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@contextlib.contextmanager
def job_tempdir(work_dir: str, job_id: int, redirect: bool) -> Iterator[Path]:
    """A fresh temporary folder for one job, removed however the job ends.

    With ``redirect`` (a Celery pool process runs one job at a time) ``tempfile`` and ``TMPDIR``
    point there for the job's duration, so whatever the libraries write lands there too. What a
    killed attempt left behind is removed when the job is claimed again on this machine.
    """
    path = Path(work_dir).resolve() / f"job-{job_id}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    saved = (tempfile.tempdir, os.environ.get("TMPDIR"))
    if redirect:
        tempfile.tempdir = str(path)
        os.environ["TMPDIR"] = str(path)
    try:
        yield path
    finally:
        if redirect:
            tempfile.tempdir = saved[0]
            if saved[1] is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved[1]
        shutil.rmtree(path, ignore_errors=True)


class JobReporter:
    """Progress callback and cancellation check of one running job, throttled to one write per interval."""

    def __init__(self, lease: Lease, interval_s: float) -> None:
        self.lease, self.interval_s = lease, interval_s
        self._last_write = float("-inf")
        self._last_check = float("-inf")
        self._cancel = False

    def progress(self, fraction: float, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < self.interval_s:
            return
        self._cancel = self.lease.progress(fraction, stage)
        self._last_write = self._last_check = now

    def should_cancel(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not self._cancel and (force or now - self._last_check >= self.interval_s):
            self._cancel = self.lease.cancel_requested()
            self._last_check = now
        return self._cancel

    def span(self, start: float, end: float, prefix: str = "") -> Callable[[float, str], None]:
        def scaled(fraction: float, stage: str) -> None:
            self.progress(start + (end - start) * fraction, f"{prefix}{stage}")

        return scaled
