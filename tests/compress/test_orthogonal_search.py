"""Orthogonal search: one more layer per trial, heaviest first, until accuracy drops beyond the budget or
significantly; the chosen row is the most layers that still pass."""

from __future__ import annotations

from compress.measure import Measurement
from compress.runner import Runner, Step
from compress.techniques.base import Context, Variant
from compress.techniques.orthogonal import eligible_layers

BASE_ACCURACY = 95.0
LOSS_PER_LAYER = (0.2, 0.3, 2.5, 0.1)
"""Points lost by making the 1st, 2nd, 3rd... heaviest layer orthogonal: the third breaks the budget."""


class LayerCountRunner(Runner):
    """Real orthogonal variants (the weights really are constrained and fine-tuned); the accuracy a stub of how
    many layers were made orthogonal, so where the search must stop is known."""

    def _measure(self, variant: Variant) -> Measurement:
        k = len(variant.notes["orthogonal_layers"])
        return Measurement(
            n_params=1000 - 100 * k, bytes=4000 - 400 * k, nonzero_params=1000, macs=1, activation_ops=0, ops=1,
            flops=2, sparse_macs=1, accuracy=BASE_ACCURACY - sum(LOSS_PER_LAYER[:k]),
        )  # fmt: skip


def test_heaviest_layers_first_and_the_most_layers_within_budget(digits, digits_baseline) -> None:  # noqa: ANN001
    model, spec = digits_baseline.model, digits_baseline.spec
    ctx = Context(digits, model, spec, base_accuracy=BASE_ACCURACY)
    params = {"search": True, "max_accuracy_drop": 1.0, "epochs": 0}
    rows = LayerCountRunner(ctx).run([Step(technique="orthogonal", params=params)], model, spec)

    heaviest = sorted(
        (n for n, m in model.named_modules() if type(m).__name__ in ("Conv2d", "Linear")),
        key=lambda n: dict(model.named_modules())[n].weight.numel(),
        reverse=True,
    )
    assert eligible_layers(model, spec, None) == heaviest  # type: ignore[arg-type]
    layers = [r.row.notes["orthogonal_layers"] for r in rows]
    assert layers == [heaviest[:k] for k in range(1, len(heaviest) + 1)]  # one more layer each time, heaviest first
    assert [r.row.strength for r in rows] == list(range(1, len(heaviest) + 1))
    (chosen,) = [r for r in rows if not r.row.trial]
    assert chosen.row.notes["orthogonal_layers"] == heaviest[:2]  # 0.5 points lost; the third costs 3.0
    assert chosen.row.label.endswith("[chosen]") and chosen.model is not None
    assert chosen.row.strength == 2 and chosen.row.accuracy_drop == 0.5
