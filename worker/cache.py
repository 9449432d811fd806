"""Per-process LRU caches: a base model's trained weights and its data set are loaded once, not per job."""

from __future__ import annotations

from functools import lru_cache

from torch import nn

from compress.datasets import DatasetSplit, load_dataset
from compress.layer_spec import ModelSpec
from compress.persistence import load_model
from store.settings import get_settings


def _capacity(name: str) -> int:
    return int(getattr(get_settings(), name))


@lru_cache(maxsize=_capacity("cache_datasets"))
def dataset(spec: str, seed: int, data_root: str, allow_download: bool) -> DatasetSplit:
    """The normalised split of a data set spec; same seed, same split, so the cache key is (spec, seed)."""
    return load_dataset(spec, root=data_root, allow_download=allow_download, seed=seed)


@lru_cache(maxsize=_capacity("cache_models"))
def base_model(model_id: str, artifact_path: str) -> tuple[nn.Module, ModelSpec]:
    """A base model's trained weights; keyed by the artifact too, so retraining is never served stale.

    Shared and read-only: techniques deep-copy before changing anything.
    """
    model, spec = load_model(artifact_path)
    model.eval()
    return model, spec


def clear() -> None:
    dataset.cache_clear()
    base_model.cache_clear()
