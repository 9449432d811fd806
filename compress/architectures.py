"""Built-in base architectures, each a named-layer spec (``nn.Sequential(OrderedDict(...))``).

``get_architecture(name).spec(input_shape, num_classes)`` gives the ModelSpec; the flatten size
of the first linear layer follows from the input shape, so the same architecture fits any
compatible data set. A torchvision architecture (``network`` set) is a whole network spec
(``ModelSpec.network``): its layers are torchvision's module paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from compress.layer_spec import LayerSpec, ModelSpec, NetworkSpec, refit_inputs
from compress.registry import Registry


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    default_dataset: str
    layers: Callable[[tuple[int, int, int], int], list[dict[str, Any]]]
    training: dict[str, Any] = field(default_factory=dict)
    network: str = ""
    """torchvision model name when the architecture is a whole torchvision network."""

    def spec(self, input_shape: tuple[int, int, int] | None = None, num_classes: int | None = None) -> ModelSpec:
        shape = input_shape or self.input_shape
        classes = num_classes or self.num_classes
        if self.network:
            net = NetworkSpec(name=self.network, args={"num_classes": classes})
            return ModelSpec(input_shape=shape, num_classes=classes, network=net)
        layers = [LayerSpec(**layer) for layer in self.layers(shape, classes)]  # type: ignore[arg-type]
        return ModelSpec(input_shape=shape, num_classes=classes, layers=refit_inputs(layers, shape))


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def register_architecture(arch: Architecture) -> Architecture:
    return ARCHITECTURES.register(arch.name, arch)


def get_architecture(name: str) -> Architecture:
    return ARCHITECTURES.get(name)


def list_architectures() -> list[Architecture]:
    return ARCHITECTURES.list()


def _conv(name: str, out: int, k: int, padding: int = 0, **extra: Any) -> dict[str, Any]:
    args = {"in_channels": 0, "out_channels": out, "kernel_size": k, "padding": padding, **extra}
    return {"name": name, "type": "Conv2d", "args": args}


def _linear(name: str, out: int) -> dict[str, Any]:
    return {"name": name, "type": "Linear", "args": {"in_features": 0, "out_features": out}}


def _layer(name: str, type_: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "args": args}


def _digits_cnn(shape: tuple[int, int, int], classes: int) -> list[dict[str, Any]]:
    return [
        _conv("conv1", 16, 3, padding=1),
        _layer("relu1", "ReLU"),
        _conv("conv2", 32, 3, padding=1),
        _layer("relu2", "ReLU"),
        _layer("pool2", "MaxPool2d", kernel_size=2),
        _layer("flatten", "Flatten"),
        _linear("fc1", 64),
        _layer("relu3", "ReLU"),
        _linear("fc2", classes),
    ]


def _mnist_cnn(shape: tuple[int, int, int], classes: int) -> list[dict[str, Any]]:
    return [
        _conv("conv1", 32, 3, padding=1, bias=False),
        _layer("bn1", "BatchNorm2d", num_features=0),
        _layer("relu1", "ReLU"),
        _layer("pool1", "MaxPool2d", kernel_size=2),
        _conv("conv2", 64, 3, padding=1, bias=False),
        _layer("bn2", "BatchNorm2d", num_features=0),
        _layer("relu2", "ReLU"),
        _layer("pool2", "MaxPool2d", kernel_size=2),
        _conv("conv3", 128, 3, padding=1, bias=False),
        _layer("bn3", "BatchNorm2d", num_features=0),
        _layer("relu3", "ReLU"),
        _layer("flatten", "Flatten"),
        _layer("drop1", "Dropout", p=0.25),
        _linear("fc1", 256),
        _layer("relu4", "ReLU"),
        _layer("drop2", "Dropout", p=0.25),
        _linear("fc2", classes),
    ]


def _lenet5(shape: tuple[int, int, int], classes: int) -> list[dict[str, Any]]:
    return [
        _conv("conv1", 6, 5, padding=2),
        _layer("act1", "Tanh"),
        _layer("pool1", "AvgPool2d", kernel_size=2),
        _conv("conv2", 16, 5),
        _layer("act2", "Tanh"),
        _layer("pool2", "AvgPool2d", kernel_size=2),
        _layer("flatten", "Flatten"),
        _linear("fc1", 120),
        _layer("act3", "Tanh"),
        _linear("fc2", 84),
        _layer("act4", "Tanh"),
        _linear("fc3", classes),
    ]


def _no_layers(shape: tuple[int, int, int], classes: int) -> list[dict[str, Any]]:
    return []


register_architecture(
    Architecture(
        "digits-cnn",
        "Small 2-conv CNN for scikit-learn's 8x8 digits (the offline default).",
        (1, 8, 8),
        10,
        "digits",
        _digits_cnn,
        {"epochs": 10, "batch_size": 64, "lr": 1e-3},
    )
)
register_architecture(
    Architecture(
        "mnist-cnn",
        "The big deep network for 28x28x1: 3 conv+BN+ReLU blocks and 2 linear layers, ~1.7 M "
        "parameters, most of them in fc1.",
        (1, 28, 28),
        10,
        "idx:../shared/data/mnist",
        _mnist_cnn,
        {"epochs": 3, "batch_size": 128, "lr": 3e-3},
    )
)
register_architecture(
    Architecture(
        "lenet5",
        "LeCun's LeNet-5 (tanh, average pooling) for 28x28x1.",
        (1, 28, 28),
        10,
        "mnist",
        _lenet5,
    )
)
_TORCHVISION = {
    "resnet18": "ResNet-18 (residual basic blocks), ~11 M parameters.",
    "resnet50": "ResNet-50 (residual bottleneck blocks), ~24 M parameters.",
    "mobilenet_v2": "MobileNetV2 (inverted residuals, depthwise convs; width_mult narrows it).",
    "mobilenet_v3_small": "MobileNetV3-Small (squeeze-excitation, hardswish; width_mult narrows it).",
    "efficientnet_b0": "EfficientNet-B0 (MBConv blocks with squeeze-excitation, SiLU).",
    "vgg11_bn": "VGG-11 with BatchNorm (plain conv stack, ~129 M parameters, most in the classifier).",
}
for _name, _about in _TORCHVISION.items():
    register_architecture(
        Architecture(
            _name,
            f"torchvision's {_about} Untrained (weights=None); layers are its module paths (layer1.0.conv1).",
            (3, 32, 32),
            10,
            "cifar10",
            _no_layers,
            network=_name,
        )
    )
