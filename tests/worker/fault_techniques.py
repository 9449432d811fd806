"""Techniques for the fault tests only, outside the product package: importing this module registers them.

A worker imports it when the setting ``extra_task_modules`` names it
(``NETREDUCE_EXTRA_TASK_MODULES=tests.worker.fault_techniques``, the repository root on ``PYTHONPATH``).

- ``test-sleep``: writes a file with ``tempfile`` (so it lands in the job's temporary folder) when
  asked, then sleeps without reporting progress, so only the heartbeat thread keeps the job alive;
  returns an unchanged copy of the base model.
- ``test-crash``: ends its process at once with ``os._exit`` (a poison job: it kills every worker
  process that runs it).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time

from pydantic import Field
from torch import nn

from compress.layer_spec import ModelSpec
from compress.techniques.base import TECHNIQUES, Context, Technique, TechniqueParams, Variant, register_technique


class SleepParams(TechniqueParams):
    seconds: float = Field(default=1.0, ge=0.0, le=600.0, description="How long to sleep (s).")
    write_temp: bool = Field(default=False, description="Write a temporary file first.")


class CrashParams(TechniqueParams):
    exit_code: int = Field(default=3, ge=0, le=255, description="The process's exit code.")


def _sleep(model: nn.Module, spec: ModelSpec, params: SleepParams, ctx: Context) -> Variant:
    notes: dict[str, object] = {"slept_s": params.seconds, "pid": os.getpid()}
    if params.write_temp:
        fd, path = tempfile.mkstemp(prefix="test-sleep-", suffix=".tmp")
        os.write(fd, b"x" * 4096)
        os.close(fd)
        notes["temp_file"] = path
    time.sleep(params.seconds)
    return Variant(copy.deepcopy(model), spec, notes=notes)


def _crash(model: nn.Module, spec: ModelSpec, params: CrashParams, ctx: Context) -> Variant:
    os._exit(params.exit_code)


HOOKS = (
    Technique("test-sleep", "Fault tests only: sleep without progress.", SleepParams, _sleep),
    Technique("test-crash", "Fault tests only: kill the process running it.", CrashParams, _crash),
)


def register() -> None:
    """Register the hooks in this process (once: a second call changes nothing)."""
    import compress.techniques  # noqa: F401  (the built-ins first)

    for hook in HOOKS:
        if hook.name not in TECHNIQUES:
            register_technique(hook)


def unregister() -> None:
    for hook in HOOKS:
        TECHNIQUES._items.pop(hook.name, None)


register()
