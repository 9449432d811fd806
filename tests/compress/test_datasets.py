from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from compress.datasets import DatasetError, load_dataset, read_idx

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
