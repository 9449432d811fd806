"""The result row's columns, declared once: name, type, unit, description and how tables show them.

Every view of a result row is derived from :data:`RESULT_COLUMNS`: the SQL table (``store.tables``),
the API's row schema, the ``/comparison`` JSON and CSV column order, the worker's mapping of a
:class:`compress.measure.Measurement` to a stored row, the dashboard and the CLI tables. Adding a
column is one entry here plus a migration; append it (``/comparison``'s column order only grows at
the end), and let the migration add the same column, e.g.::

    with op.batch_alter_table("result_rows") as batch:
        batch.add_column(sa.Column("eval_samples", sa.BigInteger(), nullable=True))

(tests/api/test_migrations.py fails while the table and the migrations disagree). Declare a new column
nullable: rows written before it have none. Pure data: importing this module loads nothing outside the
standard library, so the thin HTTP client can use it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Origin = Literal["measurement", "variant", "record", "ratio", "speedup", "front"]
Kind = Literal[
    "text", "params", "int", "fixed2", "signed2", "ratio", "speedup", "pvalue", "front", "bool", "json", "time"
]


@dataclass(frozen=True)
class ResultColumn:
    """One column of a result row.

    ``origin`` says who fills it: ``measurement``, the :class:`~compress.measure.Measurement` field of
    the same name; ``variant``, the runner (what was applied, and the comparison with the baseline);
    ``record``, the store (which job wrote it, when); ``ratio``, computed when served
    (``ratio_of`` / the baseline's); ``speedup``, computed when served (the baseline's ``ratio_of`` / this row's,
    only between latencies measured under the same conditions, see ``compress.latency_conditions``);
    ``front``, the Pareto flag computed when served.
    """

    name: str
    type: Any
    unit: str
    description: str
    origin: Origin
    nullable: bool = True
    default: Any = None
    wide: bool = False
    """An integer that may exceed 32 bits (counts of parameters or operations): a 64-bit column."""
    max_length: int | None = None
    stored: bool = True
    """A column of its own in the SQL table; a measurement field that is not is kept in the row's ``extra`` JSON.
    Giving one a column: move its entry to the end (``/comparison`` only grows there) and write the migration."""
    in_comparison: bool = True
    """One of ``/comparison``'s columns (JSON keys and CSV header, in declaration order)."""
    ratio_of: str | None = None
    title: str = ""
    """Short heading in the dashboard and CLI tables (the name when empty)."""
    kind: Kind = "text"
    """How tables format a value (the dashboard's ``format_cell`` and ``fmt`` in dashboard.js)."""

    @property
    def heading(self) -> str:
        return self.title or self.name

    @property
    def is_json(self) -> bool:
        """A list or mapping: a JSON column, served as compact JSON text in /comparison."""
        return self.type not in (int, float, str, bool, datetime)


def _measured(
    name: str, unit: str, description: str, title: str, *, type: Any = int, kind: Kind = "int", stored: bool = True
) -> ResultColumn:
    return ResultColumn(
        name,
        type,
        unit,
        description,
        "measurement",
        wide=type is int,
        stored=stored,
        in_comparison=stored,
        title=title,
        kind=kind,
    )


RESULT_COLUMNS: tuple[ResultColumn, ...] = (
    ResultColumn("label", str, "", "technique and the parameters set", "variant", nullable=False, max_length=1000),
    ResultColumn("technique", str, "", "technique name, or a chain 'a → b'", "variant", nullable=False, max_length=500),
    ResultColumn("params", dict[str, Any], "", "what the user or the search set", "variant", kind="params"),
    ResultColumn("recipe", list[dict[str, Any]], "", "the steps applied, in order", "variant", in_comparison=False),
    _measured("n_params", "parameters", "parameters to store", "weights"),
    _measured("bytes", "bytes", "bytes of the parameters at their dtype", "bytes"),
    _measured("file_bytes", "bytes", "size of the serialized artifact", "file bytes"),
    _measured("macs", "MACs", "multiply-accumulates per sample", "MACs"),
    _measured("flops", "FLOPs", "2 × MACs per sample", "FLOPs"),
    _measured("ops", "operations", "MACs + activation operations per sample", "ops"),
    _measured("sparse_macs", "MACs", "MACs with non-zero weights only, per sample", "sparse MACs"),
    _measured("accuracy", "%", "top-1 on the evaluation split", "accuracy %", type=float, kind="fixed2"),
    _measured(
        "loss", "", "mean cross-entropy on the evaluation split", "loss", type=float, kind="fixed2", stored=False
    ),
    ResultColumn(
        "accuracy_drop", float, "points", "points below the baseline", "variant", title="drop", kind="signed2"
    ),
    _measured("latency_ms_bs1", "ms", "median ms per batch of 1", "ms bs1", type=float, kind="fixed2"),
    _measured("latency_ms_bs64", "ms", "median ms per batch of 64", "ms bs64", type=float, kind="fixed2"),
    ResultColumn(
        "size_ratio", float, "", "bytes / baseline bytes", "ratio", ratio_of="bytes", title="size", kind="ratio"
    ),
    ResultColumn("ops_ratio", float, "", "ops / baseline ops", "ratio", ratio_of="ops", title="ops ×", kind="ratio"),
    ResultColumn(
        "trial", bool, "", "a search trial, not a kept variant", "variant", nullable=False, default=False, kind="bool"
    ),
    ResultColumn("strength", float, "", "the search's strength knob for this trial", "variant", in_comparison=False),
    ResultColumn(
        "seed", int, "", "seed of every random step", "variant", nullable=False, default=0, in_comparison=False
    ),
    ResultColumn(
        "notes", dict[str, Any], "", "what the technique reports", "variant", in_comparison=False, kind="json"
    ),
    ResultColumn("job_id", int, "", "", "record", nullable=False, title="job"),
    ResultColumn("created_at", datetime, "UTC", "when the row was written", "record", kind="time"),
    _measured("eval_samples", "samples", "size of the evaluation split the accuracy is over", "samples"),
    _measured(
        "accuracy_ci_low", "%", "95 % Wilson interval of the accuracy: low end", "acc. low", type=float, kind="fixed2"
    ),
    _measured(
        "accuracy_ci_high", "%", "95 % Wilson interval of the accuracy: top end", "acc. high", type=float, kind="fixed2"
    ),
    ResultColumn(
        "drop_p_value",
        float,
        "",
        "exact two-sided McNemar p-value against the base model on the same evaluation samples",
        "variant",
        title="p",
        kind="pvalue",
    ),
    ResultColumn(
        "drop_significant",
        bool,
        "",
        "drop_p_value < alpha (0.05 unless the job set another): the accuracies differ beyond chance",
        "variant",
        title="signif.",
        kind="bool",
    ),
    _measured("torch_threads", "threads", "torch's intra-op threads while measuring latency", "threads"),
    _measured(
        "latency_ms_bs1_p25", "ms", "25th percentile of the batch-1 timings", "bs1 p25", type=float, kind="fixed2"
    ),
    _measured(
        "latency_ms_bs1_p75", "ms", "75th percentile of the batch-1 timings", "bs1 p75", type=float, kind="fixed2"
    ),
    _measured(
        "latency_ms_bs64_p25", "ms", "25th percentile of the batch-64 timings", "bs64 p25", type=float, kind="fixed2"
    ),
    _measured(
        "latency_ms_bs64_p75", "ms", "75th percentile of the batch-64 timings", "bs64 p75", type=float, kind="fixed2"
    ),
    _measured(
        "latency_conditions",
        "",
        "threads, quantized engine, PyTorch, CPU, host, time and retime session of the latency figures",
        "conditions",
        type=dict[str, Any],
        kind="json",
    ),
    ResultColumn(
        "speedup_bs1",
        float,
        "×",
        "baseline ms / this row's ms at batch 1, from the lower quartiles of the timed passes (bursts of other "
        "load lengthen some passes: medians would swing); empty when the two were measured under different conditions",
        "speedup",
        ratio_of="latency_ms_bs1",
        title="× bs1",
        kind="speedup",
    ),
    ResultColumn(
        "speedup_bs64",
        float,
        "×",
        "baseline ms / this row's ms at batch 64, from the lower quartiles of the timed passes (bursts of other "
        "load lengthen some passes: medians would swing); empty when the two were measured under different conditions",
        "speedup",
        ratio_of="latency_ms_bs64",
        title="× bs64",
        kind="speedup",
    ),
    ResultColumn(
        "latency_note",
        str,
        "",
        "why a speedup is empty or not from one measuring session (conditions that differ from the baseline's)",
        "speedup",
        title="latency note",
    ),
    _measured(
        "ort_latency_ms_bs1", "ms", "onnxruntime (CPU) median ms per batch of 1", "ORT bs1", type=float, kind="fixed2"
    ),
    _measured(
        "ort_latency_ms_bs64", "ms", "onnxruntime (CPU) median ms/batch of 64", "ORT bs64", type=float, kind="fixed2"
    ),
)
"""Every column of a result row, in ``/comparison``'s order (append new ones at the end)."""

FRONT = ResultColumn("pareto", bool, "", "on the Pareto front", "front", title="front", kind="front")
"""The Pareto flag ``/comparison`` appends to every row, after the columns above."""

BY_NAME: dict[str, ResultColumn] = {c.name: c for c in (*RESULT_COLUMNS, FRONT)}

COMPARISON_COLUMNS: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS if c.in_comparison)
"""``/comparison``'s columns before the Pareto flag, in order."""

STORED_COLUMNS: tuple[ResultColumn, ...] = tuple(
    c for c in RESULT_COLUMNS if c.origin in ("measurement", "variant") and c.stored
)
"""The SQL table's columns that hold the result itself (the store adds its bookkeeping columns)."""

MEASURED_COLUMNS: tuple[str, ...] = tuple(c.name for c in STORED_COLUMNS if c.origin == "measurement")
"""Measurement fields with a column of their own; the rest of a Measurement is kept as JSON (``extra``)."""

VARIANT_COLUMNS: tuple[str, ...] = tuple(c.name for c in STORED_COLUMNS if c.origin == "variant")
"""The columns the runner fills (``compress.runner.VariantRow`` has a field of each name)."""

MEASUREMENT_SUMMARY: tuple[str, ...] = tuple(c.name for c in RESULT_COLUMNS if c.origin == "measurement")
"""The Measurement fields a row summary lists (``netreduce baseline``), stored as a column or not."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "pareto",
    "label",
    "params",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "accuracy_drop",
    "drop_p_value",
    "n_params",
    "bytes",
    "size_ratio",
    "macs",
    "ops",
    "ops_ratio",
    "latency_ms_bs1",
    "latency_ms_bs64",
    "speedup_bs64",
    "ort_latency_ms_bs64",
    "torch_threads",
    "job_id",
)
"""The readable subset the dashboard shows (the CSV has every column; labels start with the technique)."""

TERMINAL_COLUMNS: tuple[str, ...] = tuple(
    c for c in SUMMARY_COLUMNS if c not in ("params", "macs", "latency_ms_bs1", "accuracy_ci_low", "accuracy_ci_high")
)
"""The dashboard's columns that fit a terminal (``netreduce up``, ``netreduce comparison``)."""


REPORT_COLUMNS: tuple[str, ...] = (
    "pareto",
    "label",
    "technique",
    "accuracy",
    "accuracy_drop",
    "bytes",
    "size_ratio",
    "ops",
    "ops_ratio",
    "latency_ms_bs64",
    "trial",
)
"""The course report's comparison table (``compress.report``): what fits a printed page."""


def columns(names: tuple[str, ...] | list[str]) -> list[ResultColumn]:
    """The declared columns of these names, in the order given (KeyError on an unknown name)."""
    return [BY_NAME[n] for n in names]


def format_value(value: Any, kind: Kind | str) -> str:
    """A value as tables show it (dashboard, CLI, report); ``fmt`` in dashboard.js mirrors it."""
    if kind == "front":
        return "★" if value else ""
    if value is None:
        return "—"
    if kind == "int":
        return f"{value:,}"
    if kind == "fixed2":
        return f"{value:.2f}"
    if kind == "signed2":
        return f"{value:+.2f}"
    if kind == "ratio":
        return f"{100 * value:.1f} %"
    if kind == "speedup":
        return f"{value:.2f}×"
    if kind == "pvalue":
        return "<0.001" if value < 0.001 else f"{value:.3f}"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "params":
        return "" if value == "{}" else str(value)
    return str(value)
