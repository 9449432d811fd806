"""The data-root rule: an ``idx:``/``npz:`` spec may only name a path inside a configured data root."""

from __future__ import annotations

import os
from pathlib import Path

from compress.datasets import DATASETS, dataset_path


class DataRootError(ValueError):
    """A data set spec names a server path outside the allowed roots (or that does not exist)."""


def resolve_dataset_spec(spec: str, roots: list[str]) -> str:
    """Check ``spec`` and return it with its path made real (symlinks and ``..`` resolved).

    Named data sets pass unchanged (an unknown kind raises the registry's KeyError listing the valid
    ones). A path spec must resolve, after following symlinks, to a path inside one of ``roots``;
    storing the real path means the worker later reads exactly what was checked.
    """
    kind, sep, rest = spec.partition(":")
    if kind not in DATASETS:
        DATASETS.get(kind)  # raises UnknownNameError listing the valid names
    path = dataset_path(spec)
    if path is None:
        if sep:
            raise DataRootError(f"data set '{kind}' takes no path; write just '{kind}'")
        return spec
    if not rest.strip():
        raise DataRootError(f"'{kind}:' needs a path: '{kind}:<path under a data root>'")
    if "\x00" in rest:
        raise DataRootError("the data set path contains a NUL byte")
    real = Path(os.path.realpath(path))
    allowed = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    if not any(real == root or root in real.parents for root in allowed):
        raise DataRootError(  # the roots themselves are the server's paths: not shown to clients
            f"data set path '{rest}' is outside the allowed data roots ({len(roots)} configured); "
            "set NETREDUCE_DATA_ROOTS to allow another folder"
        )
    if not real.exists():
        raise DataRootError(f"data set path '{rest}' does not exist")
    return f"{kind}:{real}"
