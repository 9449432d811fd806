"""check_steps_against_spec: layer names checked against the base model's structure before a job runs."""

from __future__ import annotations

import pytest

from compress.architectures import get_architecture
from compress.layer_spec import ModelSpec
from compress.runner import Step, StepLayerError, check_steps_against_spec
from compress.techniques.base import UnknownLayerError, get_technique

MNIST = get_architecture("mnist-cnn").spec()
WEIGHTED = ["fc1", "conv3", "conv2", "fc2", "conv1"]  # heaviest first


def _check(*steps: tuple[str, dict], spec: ModelSpec = MNIST) -> None:
    check_steps_against_spec([Step(technique=t, params=p) for t, p in steps], spec)


@pytest.mark.parametrize(
    ("technique", "params", "field", "valid"),
    [
        ("prune-l1", {"layers": ["nope"]}, "layers", WEIGHTED),
        ("prune-l1", {"layers": ["conv1"], "layer_types": ["Linear"]}, "layers", ["fc1", "fc2"]),
        ("orthogonal", {"layers": ["bn1"]}, "layers", WEIGHTED),
        ("separable", {"layers": ["fc1"]}, "layers", ["conv3", "conv2", "conv1"]),
        ("prune-channels", {"amount": {"fc2": 0.5}}, "amount", ["conv1", "conv2", "conv3", "fc1"]),
    ],
)
def test_unknown_or_ineligible_layers_are_named_with_the_valid_ones(
    technique: str, params: dict, field: str, valid: list[str]
) -> None:
    with pytest.raises(StepLayerError) as err:
        _check((technique, params))
    assert err.value.valid == valid and err.value.field == field and err.value.step == 0
    assert str(err.value).startswith(f"step 1 ({technique}): unknown")
    assert ", ".join(valid) in str(err.value)


def test_prune_channels_says_why_a_layer_is_not_eligible() -> None:
    with pytest.raises(StepLayerError, match="fc2: it is the final classifier"):
        _check(("prune-channels", {"amount": {"fc2": 0.5}}))


def test_valid_names_and_techniques_without_names_pass() -> None:
    _check(("prune-l1", {"layers": ["conv1", "fc1"]}))
    _check(("orthogonal", {"layers": ["fc2"]}))
    _check(("separable", {"layers": ["conv2"]}))
    _check(("prune-channels", {"amount": {"conv1": 0.3, "fc1": 0.5}}))
    _check(("prune-channels", {"amount": 0.5}), ("quantize-dynamic", {}), ("narrow", {}))


def test_later_steps_are_checked_until_a_step_renames_layers() -> None:
    with pytest.raises(StepLayerError) as err:
        _check(("narrow", {}), ("prune-l1", {"layers": ["x"]}))
    assert err.value.step == 1 and str(err.value).startswith("step 2 (prune-l1)")
    assert get_technique("separable").keeps_layer_names is False
    _check(("separable", {"layers": ["conv2"]}), ("prune-l1", {"layers": ["conv2.v", "conv2.h"]}))


def test_a_whole_torchvision_network_has_its_channels_named_by_module_path() -> None:
    spec = ModelSpec.model_validate(
        {"input_shape": (3, 32, 32), "num_classes": 10, "network": {"name": "resnet18", "args": {"num_classes": 10}}}
    )
    _check(("prune-channels", {"amount": {"layer1.0.conv1": 0.5}}), spec=spec)
    with pytest.raises(StepLayerError, match="layers whose channels can be pruned: conv1, layer1.0.conv1") as err:
        _check(("prune-channels", {"amount": {"fc": 0.5}}), spec=spec)  # the classifier
    assert err.value.names == ["fc"] and "fc" not in err.value.valid


def test_unknown_layer_error_is_a_value_error() -> None:
    """apply() callers that catch ValueError (the worker) still do."""
    assert issubclass(UnknownLayerError, ValueError)
