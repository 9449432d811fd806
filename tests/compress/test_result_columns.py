"""The result row's one declaration agrees with the Measurement it is measured into."""

from __future__ import annotations

import subprocess
import sys
import typing

from pydantic import BaseModel

from compress.measure import Measurement
from compress.result_columns import (
    BY_NAME,
    COMPARISON_COLUMNS,
    MEASURED_COLUMNS,
    RESULT_COLUMNS,
    STORED_COLUMNS,
    SUMMARY_COLUMNS,
)


def test_every_measurement_column_is_a_measurement_field_of_its_type() -> None:
    for c in RESULT_COLUMNS:
        if c.origin != "measurement":
            continue
        assert c.name in Measurement.model_fields, c.name
        annotation = Measurement.model_fields[c.name].annotation
        arms = (annotation, *typing.get_args(annotation))
        # A field holding a pydantic model is stored and served as its JSON mapping: the declaration loads no
        # pydantic, so it declares that mapping.
        arms += tuple(dict[str, typing.Any] for a in arms if isinstance(a, type) and issubclass(a, BaseModel))
        assert c.type in arms, (c.name, annotation)


def test_names_are_unique_and_views_name_declared_columns() -> None:
    names = [c.name for c in RESULT_COLUMNS]
    assert len(names) == len(set(names))
    assert set(SUMMARY_COLUMNS) <= set(BY_NAME)
    assert set(MEASURED_COLUMNS) <= set(COMPARISON_COLUMNS)
    assert all(c.ratio_of in MEASURED_COLUMNS for c in RESULT_COLUMNS if c.ratio_of)
    assert all(c.stored for c in STORED_COLUMNS)


def test_the_declaration_loads_only_the_standard_library() -> None:
    code = "import sys, compress.result_columns; print(sorted(m for m in ('torch', 'pydantic') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
