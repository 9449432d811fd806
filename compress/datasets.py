"""Data sets as in-memory tensors: a registry of sources and one normalised train/eval split.

Spec strings: ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10`` (torchvision, read from a data
root; downloaded only when ``allow_download``), ``idx:<folder>`` (IDX files, gzip or not) and
``npz:<file>`` (keras layout ``x_train, y_train, x_test, y_test``). A source with a single split
is split with a seeded permutation (the MNIST test split: 8,000 train / 2,000 eval).

:func:`describe_dataset` says what a spec would give (one sample's shape, the class count) from file
headers and labels alone, so a model that could never train on it is refused before a job is queued.
Its messages name files by their place inside the data set (``MNIST/raw/...``, the folder's own
name), never by the server's absolute path.
"""

from __future__ import annotations

import gzip
import math
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.registry import Registry


class DatasetError(ValueError):
    """A data set that cannot be loaded or does not fit the model; the message says why."""


@dataclass
class DatasetSplit:
    """Normalised float32 images (N, C, H, W) and int64 labels, all in memory."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def check_fits(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        DatasetInfo(self.name, self.input_shape, self.num_classes).check_fits(input_shape, num_classes)

    def calibration_subset(self, n: int = 1000, seed: int = 0) -> torch.Tensor:
        """A seeded subset of the training images, for quantization calibration."""
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self.train_x), generator=g)[: min(n, len(self.train_x))]
        return self.train_x[idx]

    def subset(self, n_train: int | None = None, n_eval: int | None = None) -> DatasetSplit:
        """The first samples of each split (already shuffled), for fast tests."""
        return DatasetSplit(
            self.name,
            self.train_x[:n_train],
            self.train_y[:n_train],
            self.eval_x[:n_eval],
            self.eval_y[:n_eval],
            self.num_classes,
            self.mean,
            self.std,
        )


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set gives a model, known without loading it: one sample's (C, H, W) and the classes."""

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int

    def check_fits(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        if tuple(input_shape) != self.input_shape:
            raise DatasetError(
                f"model input shape {tuple(input_shape)} does not match data set '{self.name}' "
                f"sample shape {self.input_shape}; give input_shape {list(self.input_shape)}"
            )
        if num_classes < self.num_classes:
            raise DatasetError(
                f"model has {num_classes} outputs but data set '{self.name}' has {self.num_classes} classes; "
                f"it needs at least {self.num_classes}"
            )


Describe = Callable[[str, Path, bool], DatasetInfo]


@dataclass(frozen=True)
class DatasetSource:
    name: str
    description: str
    loader: Callable[[str, Path, bool, int], DatasetSplit]
    takes_path: bool = False
    describe: Describe | None = None
    """Shape and classes from headers only (see :func:`describe_dataset`)."""


DATASETS: Registry[DatasetSource] = Registry("data set")


def _finish(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
    seed: int,
    n_eval_single: int | float = 0.2,
) -> DatasetSplit:
    """Add the channel axis, split when needed, normalise with the training split's statistics."""
    x_train = np.asarray(x_train, dtype=np.float32)
    if x_train.ndim == 3:
        x_train = x_train[:, None]
    elif x_train.ndim == 4 and x_train.shape[-1] in (1, 3) and x_train.shape[1] not in (1, 3):
        x_train = x_train.transpose(0, 3, 1, 2)
    y_train = np.asarray(y_train).astype(np.int64).reshape(-1)
    if x_eval is None or y_eval is None:
        n = len(x_train)
        n_eval = int(round(n * n_eval_single)) if isinstance(n_eval_single, float) else n_eval_single
        perm = np.random.default_rng(seed).permutation(n)
        x_eval, y_eval = x_train[perm[:n_eval]], y_train[perm[:n_eval]]
        x_train, y_train = x_train[perm[n_eval:]], y_train[perm[n_eval:]]
    else:
        x_eval = np.asarray(x_eval, dtype=np.float32)
        if x_eval.ndim == 3:
            x_eval = x_eval[:, None]
        elif x_eval.ndim == 4 and x_eval.shape[-1] in (1, 3) and x_eval.shape[1] not in (1, 3):
            x_eval = x_eval.transpose(0, 3, 1, 2)
        y_eval = np.asarray(y_eval).astype(np.int64).reshape(-1)
        perm = np.random.default_rng(seed).permutation(len(x_train))
        x_train, y_train = x_train[perm], y_train[perm]
    scale = 255.0 if x_train.max() > 1.5 else 1.0
    x_train, x_eval = x_train / scale, x_eval / scale
    mean = x_train.mean(axis=(0, 2, 3))
    std = x_train.std(axis=(0, 2, 3)) + 1e-8
    norm = lambda a: (a - mean[None, :, None, None]) / std[None, :, None, None]  # noqa: E731
    num_classes = int(max(y_train.max(), y_eval.max())) + 1
    return DatasetSplit(
        name,
        torch.from_numpy(np.ascontiguousarray(norm(x_train), dtype=np.float32)),
        torch.from_numpy(y_train),
        torch.from_numpy(np.ascontiguousarray(norm(x_eval), dtype=np.float32)),
        torch.from_numpy(y_eval),
        num_classes,
        tuple(float(m) for m in mean),
        tuple(float(s) for s in std),
    )


def _load_digits(spec: str, root: Path, allow_download: bool, seed: int) -> DatasetSplit:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    return _finish("digits", images, digits.target, None, None, seed, 0.2)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) into a numpy array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path.name}: not an IDX file")
    dtype: Any = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}.get(raw[2])
    if dtype is None:
        raise DatasetError(f"{path.name}: unknown IDX element type {raw[2]:#x}")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DatasetError(f"{path.name}: expected {int(np.prod(dims))} elements, found {data.size}")
    return data.reshape(dims)


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for candidate in sorted(folder.iterdir()):
        n = candidate.name
        if n.startswith(prefix) and kind in n and "idx" in n:
            return candidate
    return None


def _load_idx(spec: str, root: Path, allow_download: bool, seed: int) -> DatasetSplit:
    folder = Path(spec.split(":", 1)[1]).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"idx: folder '{folder}' does not exist")
    train_x, train_y = _find_idx(folder, "train", "images"), _find_idx(folder, "train", "labels")
    test_x, test_y = _find_idx(folder, "t10k", "images"), _find_idx(folder, "t10k", "labels")
    if train_x and train_y:
        ev = (read_idx(test_x), read_idx(test_y)) if test_x and test_y else (None, None)
        return _finish(spec, read_idx(train_x), read_idx(train_y), ev[0], ev[1], seed, 0.2)
    if test_x and test_y:
        x, y = read_idx(test_x), read_idx(test_y)
        return _finish(spec, x, y, None, None, seed, len(x) // 5)
    raise DatasetError(f"idx: no '*-images-idx*' / '*-labels-idx*' pair in '{folder}'")


def _load_npz(spec: str, root: Path, allow_download: bool, seed: int) -> DatasetSplit:
    path = Path(spec.split(":", 1)[1]).expanduser()
    if not path.is_file():
        raise DatasetError(f"npz: file '{path}' does not exist")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("x_train", "y_train") if k not in f.files]
        if missing:
            raise DatasetError(f"npz: '{path.name}' lacks {missing}; expected x_train, y_train, x_test, y_test")
        if "x_test" in f.files and "y_test" in f.files:
            return _finish(spec, f["x_train"], f["y_train"], f["x_test"], f["y_test"], seed)
        return _finish(spec, f["x_train"], f["y_train"], None, None, seed)


def _torchvision(cls_name: str) -> Callable[[str, Path, bool, int], DatasetSplit]:
    def load(spec: str, root: Path, allow_download: bool, seed: int) -> DatasetSplit:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        try:
            train = cls(str(root), train=True, download=allow_download)
            test = cls(str(root), train=False, download=allow_download)
        except RuntimeError as exc:
            hint = "" if allow_download else " (downloads are off: set NETREDUCE_ALLOW_DOWNLOAD=true)"
            raise DatasetError(f"{spec}: not found in the data root (NETREDUCE_DATA_ROOT){hint}: {exc}") from exc
        return _finish(
            spec,
            np.asarray(train.data),
            np.asarray(train.targets),
            np.asarray(test.data),
            np.asarray(test.targets),
            seed,
        )

    return load


# -- describing without loading --------------------------------------------------------------------


def sample_shape(dims: tuple[int, ...], what: str) -> tuple[int, int, int]:
    """(C, H, W) of one sample of an image array of shape ``dims``, by the same rule as loading."""
    if len(dims) == 3:
        shape = (1, dims[1], dims[2])
    elif len(dims) == 4 and dims[-1] in (1, 3) and dims[1] not in (1, 3):
        shape = (dims[3], dims[1], dims[2])
    elif len(dims) == 4:
        shape = (dims[1], dims[2], dims[3])
    else:
        raise DatasetError(f"{what}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W); found shape {dims}")
    if dims[0] == 0 or 0 in shape:
        raise DatasetError(f"{what}: no samples (shape {dims})")
    return shape


def count_classes(labels: list[np.ndarray], what: str) -> int:
    """Classes = largest label + 1, as loading counts them; labels must be integers >= 0."""
    flat = [np.asarray(y).reshape(-1) for y in labels]
    if not flat or any(y.size == 0 for y in flat):
        raise DatasetError(f"{what}: no labels")
    whole = all(y.dtype.kind in "iub" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y)))) for y in flat)
    if not whole:  # float labels that are whole numbers (1.0, 2.0) load as the integers they are
        raise DatasetError(f"{what}: labels must be integers, found {', '.join(sorted({y.dtype.name for y in flat}))}")
    low, high = min(int(y.min()) for y in flat), max(int(y.max()) for y in flat)
    if low < 0:
        raise DatasetError(f"{what}: labels must be >= 0, found {low}")
    return high + 1


def _describe_digits(spec: str, root: Path, allow_download: bool) -> DatasetInfo:
    return DatasetInfo("digits", (1, 8, 8), 10)


_IDX_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def read_idx_header(path: Path) -> tuple[int, ...]:
    """The dimensions an IDX file declares (gzip or raw), reading only its header; a raw file's size
    must match them."""
    with path.open("rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_BYTES:
                raise DatasetError(f"{path.name}: not an IDX file")
            raw_dims = f.read(4 * head[3])
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path.name}: cannot be read ({type(exc).__name__})") from None
    if len(raw_dims) < 4 * head[3]:
        raise DatasetError(f"{path.name}: truncated IDX header")
    dims = struct.unpack(f">{head[3]}I", raw_dims)
    if not gz:
        expected = 4 + 4 * len(dims) + math.prod(dims) * _IDX_BYTES[head[2]]
        if path.stat().st_size != expected:
            raise DatasetError(f"{path.name}: its header declares {dims} ({expected} bytes), the file is not that size")
    return dims


def _describe_idx(spec: str, root: Path, allow_download: bool) -> DatasetInfo:
    folder = Path(spec.split(":", 1)[1]).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"idx: folder '{folder.name}' does not exist (or is not a folder)")
    pairs = [(_find_idx(folder, p, "images"), _find_idx(folder, p, "labels")) for p in ("train", "t10k")]
    found = [(x, y) for x, y in pairs if x and y]
    if not found:
        raise DatasetError(
            f"idx: no '*-images-idx*' / '*-labels-idx*' pair (train-* or t10k-*) in folder '{folder.name}'"
        )
    shapes, labels = set(), []
    for x, y in found:  # loading uses train + t10k when both are there, either one alone otherwise
        assert x is not None and y is not None
        dims, y_dims = read_idx_header(x), read_idx_header(y)
        if math.prod(y_dims) != dims[0]:
            raise DatasetError(f"idx: {x.name} has {dims[0]} images but {y.name} has {math.prod(y_dims)} labels")
        shapes.add(sample_shape(dims, f"idx: {x.name}"))
        labels.append(read_idx(y))
    if len(shapes) > 1:
        raise DatasetError(f"idx: the train and t10k images differ in shape ({sorted(shapes)})")
    return DatasetInfo(spec, shapes.pop(), count_classes(labels, f"idx: folder '{folder.name}'"))


def _npy_shape(archive: zipfile.ZipFile, member: str, what: str) -> tuple[int, ...]:
    try:
        with archive.open(member) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = read(f)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{what}: '{member}' is not a readable .npy array ({exc})") from None
    return tuple(int(d) for d in shape)


def _describe_npz(spec: str, root: Path, allow_download: bool) -> DatasetInfo:
    path = Path(spec.split(":", 1)[1]).expanduser()
    if path.is_dir():
        raise DatasetError(f"npz: '{path.name}' is a folder; name one .npz file in it (keras layout)")
    if not path.is_file():
        raise DatasetError(f"npz: file '{path.name}' does not exist")
    what = f"npz: '{path.name}'"
    try:
        with zipfile.ZipFile(path) as archive:
            members = {n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")}
            missing = [k for k in ("x_train", "y_train") if k not in members]
            if missing:
                raise DatasetError(f"{what} lacks {missing}; expected x_train, y_train[, x_test, y_test]")
            test = "x_test" in members and "y_test" in members
            keys = ("train", "test") if test else ("train",)
            shapes, label_shapes = {}, {}
            for k in keys:
                shapes[k] = _npy_shape(archive, f"x_{k}.npy", what)
                label_shapes[k] = _npy_shape(archive, f"y_{k}.npy", what)
    except zipfile.BadZipFile:
        raise DatasetError(f"{what} is not an .npz archive") from None
    for k in keys:
        n_labels = math.prod(label_shapes[k])
        if not shapes[k] or n_labels != shapes[k][0]:
            raise DatasetError(f"{what}: x_{k} has shape {shapes[k]} but y_{k} has {n_labels} labels")
    sample = {sample_shape(shapes[k], f"{what} x_{k}") for k in keys}
    if len(sample) > 1:
        raise DatasetError(f"{what}: x_train and x_test differ in sample shape ({sorted(sample)})")
    try:
        with np.load(path, allow_pickle=False) as f:
            labels = [f[f"y_{k}"] for k in keys]
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{what}: labels cannot be read ({exc})") from None
    return DatasetInfo(spec, sample.pop(), count_classes(labels, what))


_TORCHVISION_FILES: dict[str, tuple[tuple[str, ...], ...]] = {
    # any one tuple present is enough (MNIST reads its legacy processed files too)
    "MNIST": (
        tuple(f"MNIST/raw/{n}" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
        ("MNIST/processed/training.pt", "MNIST/processed/test.pt"),
    ),
    "FashionMNIST": (
        tuple(f"FashionMNIST/raw/{n}" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
        ("FashionMNIST/processed/training.pt", "FashionMNIST/processed/test.pt"),
    ),
    "CIFAR10": (
        tuple(f"cifar-10-batches-py/{n}" for n in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                                                    "batches.meta")),
    ),
}  # fmt: skip


def _describe_torchvision(cls_name: str, shape: tuple[int, int, int], classes: int) -> Describe:
    def describe(spec: str, root: Path, allow_download: bool) -> DatasetInfo:
        layouts = _TORCHVISION_FILES[cls_name]
        present = any(all((root / f).is_file() for f in files) for files in layouts)
        if not present and not allow_download:
            missing = [f for f in layouts[0] if not (root / f).is_file()]
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DatasetError(
                f"{spec}: not found in the data root (missing {missing[0]}{more}); downloads are off: "
                "put the files there, or set NETREDUCE_ALLOW_DOWNLOAD=true"
            )
        return DatasetInfo(spec, shape, classes)

    return describe


DATASETS.register(
    "digits",
    DatasetSource(
        "digits", "scikit-learn 8x8 digits, 1,797 images (offline).", _load_digits, describe=_describe_digits
    ),
)
DATASETS.register(
    "mnist",
    DatasetSource(
        "mnist",
        "MNIST 28x28 (torchvision, under the data root).",
        _torchvision("MNIST"),
        describe=_describe_torchvision("MNIST", (1, 28, 28), 10),
    ),
)
DATASETS.register(
    "fashion-mnist",
    DatasetSource(
        "fashion-mnist",
        "Fashion-MNIST 28x28 (torchvision).",
        _torchvision("FashionMNIST"),
        describe=_describe_torchvision("FashionMNIST", (1, 28, 28), 10),
    ),
)
DATASETS.register(
    "cifar10",
    DatasetSource(
        "cifar10",
        "CIFAR-10 32x32x3 (torchvision).",
        _torchvision("CIFAR10"),
        describe=_describe_torchvision("CIFAR10", (3, 32, 32), 10),
    ),
)
DATASETS.register(
    "idx",
    DatasetSource(
        "idx",
        "idx:<folder> — IDX files (train-*/t10k-*); a test split alone is split 80/20.",
        _load_idx,
        True,
        describe=_describe_idx,
    ),
)
DATASETS.register(
    "npz",
    DatasetSource(
        "npz",
        "npz:<file> — keras layout x_train, y_train[, x_test, y_test].",
        _load_npz,
        True,
        describe=_describe_npz,
    ),
)


def dataset_path(spec: str) -> Path | None:
    """The server path a spec names (``idx:``/``npz:``), or None for named data sets."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in DATASETS and DATASETS.get(kind).takes_path:
        return Path(rest).expanduser()
    return None


def describe_dataset(spec: str, root: str | Path = "data", allow_download: bool = False) -> DatasetInfo:
    """One sample's shape and the class count ``load_dataset(spec, root, allow_download)`` would give,
    from headers and labels only; DatasetError when it could not be loaded (absent, empty, malformed).

    A torchvision data set that is absent but may be downloaded is described by its known shape.
    """
    kind = spec.split(":", 1)[0] if ":" in spec else spec
    source = DATASETS.get(kind)
    if source.takes_path and ":" not in spec:
        raise DatasetError(f"'{kind}' needs a path: '{kind}:<path>'")
    if source.describe is None:
        raise DatasetError(f"data set '{kind}' cannot be described without loading it")
    return source.describe(spec, Path(root), allow_download)


def load_dataset(spec: str, root: str | Path = "data", allow_download: bool = False, seed: int = 0) -> DatasetSplit:
    """Load a data set by spec string; same seed => same split."""
    kind = spec.split(":", 1)[0] if ":" in spec else spec
    source = DATASETS.get(kind)
    if source.takes_path and ":" not in spec:
        raise DatasetError(f"'{kind}' needs a path: '{kind}:<path>'")
    return source.loader(spec, Path(root), allow_download, seed)
