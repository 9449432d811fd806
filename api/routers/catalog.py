"""What exists: techniques (with their params JSON schema), architectures, data sets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from compress.architectures import list_architectures
from compress.datasets import DATASETS
from compress.layer_spec import LAYER_TYPES, TORCHVISION_NETWORKS
from compress.techniques.base import list_techniques

router = APIRouter(tags=["catalog"])


@router.get("/techniques")
def techniques() -> list[dict[str, Any]]:
    """Each technique's name, description, whether it can search, and its params JSON schema."""
    return [
        {
            "name": t.name,
            "description": t.description,
            "search": t.search_axis is not None,
            "params_schema": t.params_schema(),
        }
        for t in list_techniques()
    ]


@router.get("/architectures")
def architectures() -> dict[str, Any]:
    """Built-in base architectures, and the layer types a custom layer spec may use."""
    return {
        "architectures": [
            {
                "name": a.name,
                "description": a.description,
                "input_shape": list(a.input_shape),
                "num_classes": a.num_classes,
                "default_dataset": a.default_dataset,
                "layers": a.spec().model_dump(mode="json")["layers"],
                "network": a.spec().model_dump(mode="json")["network"],
            }
            for a in list_architectures()
        ],
        "layer_types": sorted([*LAYER_TYPES, "Sequential"]),
        "networks": list(TORCHVISION_NETWORKS),
    }


@router.get("/datasets")
def datasets() -> list[dict[str, Any]]:
    """Data set sources; ``takes_path`` ones are written ``kind:<path under NETREDUCE_DATA_ROOTS>``."""
    return [{"name": d.name, "description": d.description, "takes_path": d.takes_path} for d in DATASETS.list()]
