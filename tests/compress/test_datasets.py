from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from compress.datasets import DatasetError, describe_dataset, load_dataset, read_idx, read_idx_header

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def test_digits_split_is_seeded_normalised_and_offline() -> None:
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert len(a.train_y) + len(a.eval_y) == 1797 and len(a.eval_y) == 359
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10
    assert bool((a.eval_y == b.eval_y).all()) and not bool((a.eval_y == c.eval_y).all())
    assert abs(float(a.train_x.mean())) < 1e-4 and abs(float(a.train_x.std()) - 1) < 1e-2


def test_idx_single_split_is_split_80_20(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (50, 6, 6)), compress=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 3, (50,)), compress=False)
    data = load_dataset(f"idx:{tmp_path}", seed=0)
    assert (len(data.train_y), len(data.eval_y)) == (40, 10)
    assert data.input_shape == (1, 6, 6)


def test_idx_rejects_garbage(tmp_path: Path) -> None:
    (tmp_path / "x.idx").write_bytes(b"not idx at all")
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(tmp_path / "x.idx")
    with pytest.raises(DatasetError, match="no '\\*-images-idx\\*'"):
        load_dataset(f"idx:{tmp_path}")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"idx:{tmp_path / 'missing'}")


def test_npz_keras_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 255, (30, 5, 5, 3)),
        y_train=rng.integers(0, 4, 30),
        x_test=rng.integers(0, 255, (10, 5, 5, 3)),
        y_test=np.arange(10) % 4,
    )
    data = load_dataset(f"npz:{path}")
    assert data.input_shape == (3, 5, 5) and len(data.eval_y) == 10 and data.num_classes == 4


def test_shape_mismatch_names_both_shapes() -> None:
    data = load_dataset("digits")
    with pytest.raises(DatasetError, match=r"model input shape \(1, 28, 28\).*sample shape \(1, 8, 8\)"):
        data.check_fits((1, 28, 28), 10)


def test_calibration_subset_is_seeded() -> None:
    data = load_dataset("digits")
    a, b = data.calibration_subset(100, seed=3), data.calibration_subset(100, seed=3)
    assert a.shape == (100, 1, 8, 8) and bool((a == b).all())
    assert not bool((a == data.calibration_subset(100, seed=4)).all())


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="shared MNIST test split not present")
def test_shared_mnist_test_split_gives_8000_2000() -> None:
    data = load_dataset(f"idx:{SHARED_MNIST}", seed=0)
    assert (len(data.train_y), len(data.eval_y)) == (8000, 2000)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10


def _described_as_loaded(spec: str) -> None:
    info, data = describe_dataset(spec), load_dataset(spec)
    assert (info.input_shape, info.num_classes) == (data.input_shape, data.num_classes)


def test_describe_matches_what_loading_gives(tmp_path: Path) -> None:
    """Headers and labels only, yet the same sample shape and class count as a full load."""
    rng = np.random.default_rng(0)
    _described_as_loaded("digits")
    single = tmp_path / "single"
    single.mkdir()
    _write_idx(single / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (50, 6, 6)), compress=True)
    _write_idx(single / "t10k-labels-idx1-ubyte", rng.integers(0, 3, (50,)), compress=False)
    _described_as_loaded(f"idx:{single}")
    both = tmp_path / "both"
    both.mkdir()
    _write_idx(both / "train-images-idx3-ubyte", rng.integers(0, 255, (40, 7, 7)), compress=False)
    _write_idx(both / "train-labels-idx1-ubyte", np.arange(40) % 4, compress=False)
    _write_idx(both / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 7, 7)), compress=False)
    _write_idx(both / "t10k-labels-idx1-ubyte", np.full(10, 6), compress=True)  # class 6 only in the test split
    _described_as_loaded(f"idx:{both}")
    assert describe_dataset(f"idx:{both}").num_classes == 7
    for layout, shape in (((30, 5, 5, 3), (3, 5, 5)), ((30, 3, 5, 5), (3, 5, 5)), ((30, 9, 4), (1, 9, 4))):
        path = tmp_path / f"d{len(layout)}{layout[1]}.npz"
        np.savez_compressed(path, x_train=rng.integers(0, 255, layout), y_train=np.arange(30) % 5)
        _described_as_loaded(f"npz:{path}")
        assert describe_dataset(f"npz:{path}").input_shape == shape


def test_describe_refuses_what_could_never_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DatasetError, match="no '\\*-images-idx\\*' / '\\*-labels-idx\\*' pair"):
        describe_dataset(f"idx:{tmp_path}")
    with pytest.raises(DatasetError, match="folder 'missing' does not exist"):
        describe_dataset(f"idx:{tmp_path / 'missing'}")
    _write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (10, 4, 4)), compress=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(9), compress=False)
    with pytest.raises(DatasetError, match="has 10 images but train-labels-idx1-ubyte has 9 labels"):
        describe_dataset(f"idx:{tmp_path}")
    truncated = tmp_path / "cut"
    truncated.mkdir()
    _write_idx(truncated / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 4, 4)), compress=False)
    _write_idx(truncated / "t10k-labels-idx1-ubyte", np.arange(10), compress=False)
    raw = (truncated / "t10k-images-idx3-ubyte").read_bytes()
    (truncated / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="the file is not that size"):
        describe_dataset(f"idx:{truncated}")
    assert read_idx_header(truncated / "t10k-labels-idx1-ubyte") == (10,)

    with pytest.raises(DatasetError, match="is a folder"):
        describe_dataset(f"npz:{tmp_path}")
    with pytest.raises(DatasetError, match="file 'nope.npz' does not exist"):
        describe_dataset(f"npz:{tmp_path / 'nope.npz'}")
    np.savez(tmp_path / "x_only.npz", x_train=np.zeros((3, 4, 4)))
    with pytest.raises(DatasetError, match="lacks \\['y_train'\\]"):
        describe_dataset(f"npz:{tmp_path / 'x_only.npz'}")
    np.savez(tmp_path / "empty.npz", x_train=np.zeros((0, 4, 4)), y_train=np.zeros(0, dtype=int))
    with pytest.raises(DatasetError, match="no samples"):
        describe_dataset(f"npz:{tmp_path / 'empty.npz'}")
    np.savez(tmp_path / "flat.npz", x_train=np.zeros((3, 16)), y_train=np.arange(3))
    with pytest.raises(DatasetError, match="images must be \\(N, H, W\\)"):
        describe_dataset(f"npz:{tmp_path / 'flat.npz'}")
    np.savez(tmp_path / "neg.npz", x_train=np.zeros((3, 4, 4)), y_train=np.array([0, -1, 2]))
    with pytest.raises(DatasetError, match="labels must be >= 0"):
        describe_dataset(f"npz:{tmp_path / 'neg.npz'}")
    np.savez(tmp_path / "float.npz", x_train=np.zeros((3, 4, 4)), y_train=np.array([0.5, 1, 2]))
    with pytest.raises(DatasetError, match="labels must be integers"):
        describe_dataset(f"npz:{tmp_path / 'float.npz'}")
    np.savez(tmp_path / "whole.npz", x_train=np.zeros((3, 4, 4)), y_train=np.array([0.0, 1.0, 4.0]))
    assert describe_dataset(f"npz:{tmp_path / 'whole.npz'}").num_classes == 5
    (tmp_path / "junk.npz").write_bytes(b"PK not really")
    with pytest.raises(DatasetError, match="is not an .npz archive"):
        describe_dataset(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(DatasetError, match="needs a path"):
        describe_dataset("npz")


def test_describe_torchvision_sets_by_their_files(tmp_path: Path) -> None:
    """Absent and downloads off: refused, naming the missing file inside the root, not the root itself."""
    for spec, missing in (
        ("mnist", "MNIST/raw/train-images-idx3-ubyte and 3 more"),
        ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1 and 6 more"),
    ):
        with pytest.raises(DatasetError, match=f"not found in the data root \\(missing {missing}") as err:
            describe_dataset(spec, tmp_path)
        assert str(tmp_path) not in str(err.value)
    assert describe_dataset("cifar10", tmp_path, allow_download=True).input_shape == (3, 32, 32)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        (raw / name).write_bytes(b"")
    with pytest.raises(DatasetError, match="missing MNIST/raw/t10k-labels-idx1-ubyte\\)"):
        describe_dataset("mnist", tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"")
    info = describe_dataset("mnist", tmp_path)
    assert (info.input_shape, info.num_classes) == ((1, 28, 28), 10)


def test_describe_the_shared_mnist_copy_without_loading_it() -> None:
    if not SHARED_MNIST.is_dir():
        pytest.skip("no shared MNIST copy on this machine")
    info = describe_dataset(f"idx:{SHARED_MNIST}")
    assert (info.input_shape, info.num_classes) == ((1, 28, 28), 10)
