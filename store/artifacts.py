"""Model files under ``artifact_dir`` with generated names; rows store the name, never a client's path."""

from __future__ import annotations

import uuid
from pathlib import Path

from torch import nn

from compress.layer_spec import ModelSpec
from compress.persistence import save_model


class ArtifactStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def new_name(self, prefix: str) -> str:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in prefix)[:60]
        return f"{safe}-{uuid.uuid4().hex[:12]}.safetensors"

    def path(self, name: str) -> Path:
        """The file a stored name refers to; a name that would leave the folder is refused."""
        p = (self.root / name).resolve()
        if p.parent != self.root.resolve():
            raise ValueError(f"artifact name '{name}' is not a plain file name")
        return p

    def save(self, model: nn.Module, spec: ModelSpec, prefix: str) -> tuple[str, int]:
        """Write ``model`` as a new .safetensors file; returns (name, bytes written)."""
        name = self.new_name(prefix)
        written = save_model(model, spec, self.path(name))
        return name, written

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)
