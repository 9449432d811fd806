"""Run a job: one technique or a chain, fixed or searched, into measured comparison rows.

Search widens the reduction step by step and keeps every trial as a row (``trial=True``). The
chosen row is the *strongest* reduction whose accuracy drop stays within the budget, not the first
one that passes; it is returned with ``trial=False`` and its model, ready to store.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from torch import nn

from compress.correctness import unpack_correct
from compress.layer_spec import ModelSpec
from compress.measure import Measurement, measure
from compress.stats import compare_paired, split_adequacy
from compress.techniques.base import (
    Context,
    Technique,
    TechniqueParams,
    UnknownLayerError,
    Variant,
    get_technique,
    list_techniques,
)
from compress.training import evaluate_samples


class Step(BaseModel):
    technique: str
    params: dict[str, Any] = Field(default_factory=dict)


class VariantRow(BaseModel):
    label: str
    technique: str
    params: dict[str, Any]
    recipe: list[Step]
    measurement: Measurement
    accuracy_drop: float | None = None
    drop_p_value: float | None = Field(default=None, description="Exact two-sided McNemar p against the base model.")
    drop_significant: bool | None = Field(default=None, description="drop_p_value < the job's alpha.")
    trial: bool = False
    strength: float | None = Field(default=None, description="Search position: layers or ratio reached.")
    seed: int = 0
    notes: dict[str, Any] = Field(default_factory=dict)


@dataclass
class RowResult:
    row: VariantRow
    model: nn.Module | None
    spec: ModelSpec


class JobInputError(ValueError):
    """A job's technique or parameters are not acceptable; the message says what would be."""


_CONSTRAINT_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "enum", "minLength", "maxLength")


def accepted_values(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """The accepted values of one params field, read from a technique's JSON schema (all fields if unknown)."""
    prop = schema.get("properties", {}).get(field)
    if not prop:
        return {"fields": sorted(schema.get("properties", {}))}
    out = {k: prop[k] for k in _CONSTRAINT_KEYS if k in prop}
    for key in ("anyOf", "allOf"):
        for sub in prop.get(key, []):
            out.update({k: sub[k] for k in _CONSTRAINT_KEYS if k in sub})
    if "type" in prop:
        out["type"] = prop["type"]
    if "default" in prop:
        out["default"] = prop["default"]
    return out


@dataclass(frozen=True)
class StepProblem:
    """One thing wrong with a job's steps, located like a request field."""

    step: int | None
    """The step's index, or None for the chain as a whole."""
    loc: tuple[str | int, ...]
    """Where in the step: ``("technique",)``, ``("params", field, ...)``, or ``()``."""
    msg: str
    type: str
    input: Any = None
    accepted: dict[str, Any] | None = None
    valid: list[str] | None = None


class StepsInvalid(JobInputError):
    """A job's steps are not acceptable; ``problems`` say where and what would be accepted."""

    def __init__(self, problems: list[StepProblem]) -> None:
        super().__init__("; ".join(p.msg if p.step is None else f"step {p.step + 1}: {p.msg}" for p in problems))
        self.problems = problems


def _params_problems(i: int, tech: Technique, exc: ValidationError) -> list[StepProblem]:
    schema = tech.params_schema()
    problems = []
    for err in exc.errors(include_url=False):
        field = str(err["loc"][0]) if err["loc"] else ""
        raw = err.get("input")
        problems.append(
            StepProblem(
                step=i,
                loc=("params", *err["loc"]),
                msg=f"{tech.name}: {field}: {err['msg']}" if field else f"{tech.name}: {err['msg']}",
                type=err["type"],
                input=None if isinstance(raw, dict) else raw,
                accepted=accepted_values(schema, field),
            )
        )
    return problems


def validate_steps(steps: list[Step]) -> list[tuple[Technique, TechniqueParams]]:
    """Look up every step's technique and validate its params; search only on the last step.

    The one validation of a job's steps: the API runs it at POST (its problems become the 422) and the
    runner trusts what it returns. Raises :class:`StepsInvalid`."""
    if not steps:
        raise StepsInvalid([StepProblem(None, (), "a job needs at least one step", "invalid_job")])
    out = []
    for i, step in enumerate(steps):
        try:
            tech = get_technique(step.technique)
        except KeyError as exc:
            valid = [t.name for t in list_techniques()]
            raise StepsInvalid([StepProblem(i, ("technique",), str(exc), "unknown_technique", valid=valid)]) from None
        try:
            params = tech.params_model.model_validate(step.params)
        except ValidationError as exc:
            raise StepsInvalid(_params_problems(i, tech, exc)) from None
        where = f"step {i + 1} ({step.technique})"
        if params.search and i != len(steps) - 1:
            raise StepsInvalid(
                [StepProblem(None, (), f"{where}: only the last step of a chain may search", "invalid_job")]
            )
        if params.search and tech.search_axis is None:
            raise StepsInvalid(
                [StepProblem(None, (), f"technique '{step.technique}' has no search mode", "invalid_job")]
            )
        out.append((tech, params))
    return out


class StepLayerError(JobInputError):
    """A step names layers its technique cannot use on this model; ``valid`` lists those it can."""

    def __init__(self, step: int, technique: str, error: UnknownLayerError) -> None:
        super().__init__(f"step {step + 1} ({technique}): {error}")
        self.step = step
        self.technique = technique
        self.detail = str(error)
        self.names = error.names
        self.valid = error.valid
        self.field = error.field


def check_steps_against_spec(steps: list[Step], spec: ModelSpec) -> None:
    """What can be known before running: each step's params against the base model's structure (layer
    names exist and are eligible), on the meta device, without weights or data.

    Steps after one that renames layers (``keeps_layer_names=False``, e.g. separable) and specs rebuilt by
    transforms (int8) are left to the run. Raises StepLayerError, or JobInputError for other refusals.
    """
    resolved = validate_steps(steps)
    if spec.transforms:
        return
    for i, (tech, params) in enumerate(resolved):
        if tech.check_params_against is not None:
            try:
                tech.check_params_against(spec, params)
            except UnknownLayerError as exc:
                raise StepLayerError(i, tech.name, exc) from None
            except ValueError as exc:
                raise JobInputError(f"step {i + 1} ({tech.name}): {exc}") from None
        if not tech.keeps_layer_names:
            return


def _as_list(result: Variant | list[Variant]) -> list[Variant]:
    return result if isinstance(result, list) else [result]


_NOT_IN_LABEL = {"search", "max_accuracy_drop", "stop_rule", "alpha"}


def _step_label(tech: Technique, params: TechniqueParams) -> str:
    """``prune-l1 amount=0.5 scope=global``: the technique and the parameters that were set."""
    shown = {k: v for k, v in _compact(params).items() if k not in _NOT_IN_LABEL}
    parts = [
        f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, list | dict) else v}" for k, v in shown.items()
    ]
    text = " ".join([tech.name, *parts])
    return text if len(text) <= 80 else text[:79] + "…"


def _label(steps: list[tuple[Technique, TechniqueParams]], extra: str = "", with_params: bool = False) -> str:
    names = [_step_label(t, p) if with_params else t.name for t, p in steps]
    return " → ".join(names) + (f" ({extra})" if extra else "")


def _compact(params: TechniqueParams) -> dict[str, Any]:
    """The parameters the user set plus those a search set (even when equal to a default)."""
    out = params.model_dump(mode="json", exclude_unset=True)
    if out.get("search") is False:
        del out["search"]
    return out


class Runner:
    def __init__(self, ctx: Context, base_measurement: Measurement | None = None, latency_runs: int = 20):
        self.ctx = ctx
        self.base_measurement = base_measurement
        self.latency_runs = latency_runs
        self.job_notes: dict[str, Any] = {}
        """Notes about the whole job (e.g. ``eval_split``: whether the evaluation split resolves the budget)."""
        self._base_bits: np.ndarray | None = None

    def _measure(self, variant: Variant) -> Measurement:
        return measure(
            variant.model,
            variant.spec,
            self.ctx.data,
            size=variant.size,
            latency_runs=self.latency_runs,
            ops=variant.ops,
        )

    def _drop(self, m: Measurement) -> float | None:
        base = self.ctx.base_accuracy
        return None if base is None or m.accuracy is None else round(base - m.accuracy, 4)

    def _base_correct(self) -> np.ndarray:
        """Which evaluation samples the base model got right: from its measurement when that carries
        them for this split, else by evaluating it once (baselines measured before the bits were kept)."""
        if self._base_bits is None:
            n = len(self.ctx.data.eval_y)
            bm = self.base_measurement
            if bm is not None and bm.correct is not None and bm.eval_samples == n:
                self._base_bits = unpack_correct(bm.correct, n)
            else:
                self._base_bits = evaluate_samples(self.ctx.base_model, self.ctx.data)[2].numpy()
        return self._base_bits

    def _significance(self, m: Measurement, alpha: float) -> dict[str, Any]:
        """The row against the base model on the same samples (exact McNemar); {} without per-sample bits."""
        if m.correct is None or m.eval_samples is None:
            return {}
        base = self._base_correct()
        if len(base) != m.eval_samples:
            return {}
        cmp = compare_paired(base, unpack_correct(m.correct, m.eval_samples), alpha)
        return {
            "drop_p_value": cmp.p_value,
            "drop_significant": cmp.significant,
            "drop_p_value_worse": cmp.p_value_worse,
            "drop_significantly_worse": cmp.significantly_worse,
            "paired_test": {
                "test": "exact McNemar",
                "only_base_correct": cmp.only_base_correct,
                "only_variant_correct": cmp.only_variant_correct,
                "alpha": alpha,
            },
        }

    def _tested(self, m: Measurement, alpha: float, notes: dict[str, Any]) -> dict[str, Any]:
        """A row's ``drop_p_value`` and ``drop_significant`` columns, and its notes with the test's details."""
        test = self._significance(m, alpha)
        return {
            "drop_p_value": test.pop("drop_p_value", None),
            "drop_significant": test.pop("drop_significant", None),
            "notes": {**notes, **test},
        }

    def _check_split(self, params: TechniqueParams) -> dict[str, Any]:
        """Record in ``job_notes`` whether the split resolves the budget; the note rows carry when it does not."""
        n = len(self.ctx.data.eval_y)
        adequacy = split_adequacy(n, params.max_accuracy_drop, self.ctx.base_accuracy)
        self.job_notes["eval_split"] = adequacy.model_dump()
        return {"eval_split_too_small": adequacy.message} if adequacy.too_small else {}

    def _apply_chain(
        self, model: nn.Module, spec: ModelSpec, steps: list[tuple[Technique, TechniqueParams]], ctx: Context
    ) -> list[Variant]:
        variants = [Variant(model, spec)]
        n = len(steps)
        for i, (tech, params) in enumerate(steps):
            sub = ctx.sub(i / n, (i + 1) / n, f"{tech.name}: ")
            nxt: list[Variant] = []
            for v in variants:
                for out in _as_list(tech.apply(v.model, v.spec, params, sub)):
                    out.notes = {**v.notes, **out.notes}
                    out.label_suffix = " ".join(s for s in (v.label_suffix, out.label_suffix) if s)
                    nxt.append(out)
            variants = nxt
        return variants

    def run(self, steps: list[Step], model: nn.Module, spec: ModelSpec) -> list[RowResult]:
        """Run the job's steps on ``model`` (never modified) and return measured rows."""
        resolved = validate_steps(steps)
        tech, params = resolved[-1]
        split_note = self._check_split(params)
        if params.search:
            return self._search(resolved, model, spec, split_note)
        variants = self._apply_chain(model, spec, resolved, self.ctx.sub(0.0, 0.9))
        results = []
        for v in variants:
            self.ctx.report(0.92, "measuring")
            m = self._measure(v)
            row = VariantRow(
                label=_label(resolved, v.label_suffix, with_params=True),
                technique=" → ".join(t.name for t, _ in resolved),
                params=_compact(params) if len(resolved) == 1 else {},
                recipe=[Step(technique=t.name, params=_compact(p)) for t, p in resolved],
                measurement=m,
                accuracy_drop=self._drop(m),
                seed=params.seed,
                **self._tested(m, params.alpha, {**v.notes, **split_note}),
            )
            results.append(RowResult(row, v.model, v.spec))
        _add_seed_spread(results)
        self.ctx.report(1.0, "done")
        return results

    # -- search ---------------------------------------------------------------------------------

    def _trial(
        self,
        resolved: list[tuple[Technique, TechniqueParams]],
        model: nn.Module,
        spec: ModelSpec,
        params: TechniqueParams,
        strength: float,
        label: str,
        ctx: Context,
        split_note: dict[str, Any] | None = None,
    ) -> RowResult:
        chain = [*resolved[:-1], (resolved[-1][0], params)]
        variants = self._apply_chain(model, spec, chain, ctx)
        head = _label(chain[:-1], with_params=True) + " → " if len(chain) > 1 else ""
        v = variants[0]
        m = self._measure(v)
        row = VariantRow(
            label=head + _label(chain[-1:], label),
            technique=" → ".join(t.name for t, _ in chain),
            params=_compact(params),
            recipe=[Step(technique=t.name, params=_compact(p)) for t, p in chain],
            measurement=m,
            accuracy_drop=self._drop(m),
            trial=True,
            strength=strength,
            seed=params.seed,
            **self._tested(m, params.alpha, {**v.notes, **(split_note or {})}),
        )
        return RowResult(row, v.model, v.spec)

    def _search(
        self,
        resolved: list[tuple[Technique, TechniqueParams]],
        model: nn.Module,
        spec: ModelSpec,
        split_note: dict[str, Any] | None = None,
    ):
        tech, params = resolved[-1]
        axis = tech.search_axis
        assert axis is not None
        if self.ctx.base_accuracy is None:
            raise JobInputError("search needs the base model's accuracy")
        budget = params.max_accuracy_drop
        trials: list[RowResult] = []
        best: RowResult | None = None

        significance = params.stop_rule == "significance"

        def passes(r: RowResult) -> bool:
            if r.row.accuracy_drop is None or r.row.accuracy_drop > budget:
                return False
            if not significance:
                return True
            worse = r.row.notes.get("drop_significantly_worse")
            if worse is None:
                raise JobInputError("stop_rule 'significance' needs per-sample correctness of every trial")
            return not worse

        def keep(r: RowResult) -> None:
            nonlocal best
            trials.append(r)
            if passes(r) and (best is None or (r.row.strength or 0) > (best.row.strength or 0)):
                if best is not None:
                    best.model = None
                best = r
            else:
                r.model = None

        if axis.kind == "layers":
            assert axis.eligible is not None
            eligible = axis.eligible(model, spec, params)
            if not eligible:
                raise JobInputError(f"{tech.name}: the model has no eligible layers")
            n = len(eligible)
            for k in range(1, n + 1):
                if self.ctx.cancelled():
                    break
                p = params.model_copy(update={"layers": eligible[:k], "search": False})
                sub = self.ctx.sub((k - 1) / n, k / n, f"trial {k}/{n}: ")
                r = self._trial(
                    resolved,
                    model,
                    spec,
                    p,
                    float(k),
                    f"{k} layer{'s' * (k > 1)}: {', '.join(eligible[:k])}",
                    sub,
                    split_note,
                )
                keep(r)
        else:
            coarse = list(axis.coarse) or [axis.low + (axis.high - axis.low) * f for f in (0.25, 0.5, 0.75)]
            coarse = sorted(coarse, reverse=True) if axis.stronger == "lower" else sorted(coarse)
            total = len(coarse) + axis.bisect_steps
            step_i = 0

            def run_at(value: float) -> RowResult:
                nonlocal step_i
                value = round(value, 4)  # the value applied, shown and stored as strength must be one number
                p = params.model_copy(update={axis.field: value, "search": False})
                sub = self.ctx.sub(step_i / total, (step_i + 1) / total, f"trial {step_i + 1}/{total}: ")
                step_i += 1
                strength = value if axis.stronger == "higher" else -value
                r = self._trial(resolved, model, spec, p, strength, f"{axis.field}={round(value, 4)}", sub, split_note)
                keep(r)
                return r

            # Every coarse step runs (accuracy need not fall monotonically with short fine-tuning),
            # then bisection between the strongest passing step and the next stronger one (or the
            # axis' end when the strongest coarse step passed too).
            passed: list[float] = []
            for value in coarse:
                if self.ctx.cancelled():
                    break
                if passes(run_at(value)):
                    passed.append(value)
            weakest_end = axis.low if axis.stronger == "higher" else axis.high
            strongest_end = axis.high if axis.stronger == "higher" else axis.low
            if passed:
                i = coarse.index(passed[-1])
                lo, hi = coarse[i], coarse[i + 1] if i + 1 < len(coarse) else strongest_end
            else:
                lo, hi = weakest_end, coarse[0]
            if round(lo, 4) != round(hi, 4):
                for _ in range(axis.bisect_steps):
                    if self.ctx.cancelled():
                        break
                    mid = (lo + hi) / 2
                    r = run_at(mid)
                    if passes(r):
                        lo = mid
                    else:
                        hi = mid
        rule = {"stop_rule": params.stop_rule} if significance else {}
        if best is not None:
            best.row.trial = False
            best.row.notes = {**best.row.notes, "chosen_from_trials": len(trials), "budget": budget, **rule}
            best.row.label = f"{best.row.label} [chosen]"
        else:
            why = f"no trial within {budget} points"
            if significance:
                why += f" without a significant drop (one-sided exact McNemar, alpha {params.alpha:g})"
            for t in trials:
                t.row.notes = {**t.row.notes, "search": why}
        results = trials
        self.ctx.report(1.0, "done")
        return results


def _add_seed_spread(results: list[RowResult]) -> None:
    """Several starting points (seeds) of one recipe: note their accuracy mean and std."""
    accs = [r.row.measurement.accuracy for r in results if r.row.measurement.accuracy is not None]
    if len(accs) > 1:
        mean, std = statistics.mean(accs), statistics.stdev(accs)
        for r in results:
            r.row.notes = {
                **r.row.notes,
                "accuracy_mean": round(mean, 4),
                "accuracy_std": round(std, 4),
                "starting_points": len(accs),
            }
