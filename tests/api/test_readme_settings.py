"""The README's settings table lists every setting the code reads, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

from store.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented() -> None:
    text = README.read_text()
    table = text[text.index("### Settings") :]
    documented = set(re.findall(r"^\| `(NETREDUCE_[A-Z0-9_]+)` \|", table, flags=re.M))
    assert documented == {f"NETREDUCE_{name.upper()}" for name in Settings.model_fields}
