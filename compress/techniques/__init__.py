"""Built-in techniques; importing this package registers them (see base.py for the contract)."""

from compress.techniques import (  # noqa: F401
    narrow,
    orthogonal,
    prune_channels,
    prune_l1,
    quantize,
    separable,
)
from compress.techniques.base import (
    TECHNIQUES,
    Context,
    Technique,
    TechniqueParams,
    Variant,
    get_technique,
    list_techniques,
    register_technique,
)

__all__ = [
    "TECHNIQUES",
    "Context",
    "Technique",
    "TechniqueParams",
    "Variant",
    "get_technique",
    "list_techniques",
    "register_technique",
]
