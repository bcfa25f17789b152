"""Offline data sets for ``tools/train_samples.py``.

Everything here is plain numpy and deterministic given the seeds passed in:

* sklearn's bundled ``load_digits`` (8x8 digits, pixels 0..16);
* Fashion-MNIST read from the gzip IDX files in ``/usr/share/datasets/fashion-mnist``;
* a synthetic 64x64 segmentation set assembled from real Fashion-MNIST items.

All returned inputs are already preprocessed (float32, N first, channel axis 1);
the exported models do not normalise.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FMNIST_DIR = Path(os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
NUM_CLASSES = 10
SEG_CANVAS = 64
SEG_THRESHOLD = 25  # item pixel (0..255) belongs to the item when it is > 25 (~0.1)
SEG_NUM_CLASSES = NUM_CLASSES + 1  # background + 10 garment classes


@dataclass(frozen=True)
class Split:
    """Preprocessed train / calibration / test arrays of one task."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_calib: np.ndarray
    y_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    description: str


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Return sorted indices picking ``per_class`` random items of every class."""
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picked))


# --------------------------------------------------------------------------- digits


def digits_split(seed: int, test_per_class: int = 60, calib_per_class: int = 32) -> Split:
    """sklearn digits: ``test_per_class`` held out per class, calib drawn from the rest.

    Training uses every non-test sample (the calibration samples included).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = data.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx = stratified_indices(y, test_per_class, rng)
    train_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    calib_idx = train_idx[stratified_indices(y[train_idx], calib_per_class, rng)]
    description = (
        f"sklearn `load_digits()` ({len(y)} images). Stratified split with seed {seed}: "
        f"test = {test_per_class} images per class held out ({len(test_idx)}); "
        f"train = the remaining {len(train_idx)} images; calib = {calib_per_class} per "
        f"class ({len(calib_idx)}) drawn from the train part (calib images are also "
        "trained on)."
    )
    return Split(
        x[train_idx],
        y[train_idx],
        x[calib_idx],
        y[calib_idx],
        x[test_idx],
        y[test_idx],
        description,
    )


# --------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header_bytes)


def load_fmnist_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw Fashion-MNIST ``(images uint8 [N,28,28], labels int64 [N])``; split is train/t10k."""
    images = _read_idx(FMNIST_DIR / f"{split}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = _read_idx(FMNIST_DIR / f"{split}-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return images, labels


def normalise_fmnist(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> ``(x/255 - 0.2860) / 0.3530`` as float32 with a channel axis."""
    x = (pixels.astype(np.float32) / 255.0 - FMNIST_MEAN) / FMNIST_STD
    return x[:, None, :, :].astype(np.float32)


def fmnist_split(seed: int, test_per_class: int = 500, calib_per_class: int = 32) -> Split:
    """Fashion-MNIST classification split shared by all FMNIST classifiers.

    train = the full 60k train split; calib = ``calib_per_class`` per class drawn from
    it; test = a stratified subset of the 10k test split (the full 10k set compresses
    to ~6.4 MB, over the ~4 MB budget for a sidecar file).
    """
    x_tr, y_tr = load_fmnist_raw("train")
    x_te, y_te = load_fmnist_raw("t10k")
    rng = np.random.default_rng(seed)
    calib_idx = stratified_indices(y_tr, calib_per_class, rng)
    test_idx = stratified_indices(y_te, test_per_class, rng)
    description = (
        f"Fashion-MNIST. train = the full train split ({len(y_tr)} images); calib = "
        f"{calib_per_class} per class ({len(calib_idx)}) drawn from the train split "
        f"(seed {seed}); test = {test_per_class} per class ({len(test_idx)}) drawn from "
        "the 10k test split (stratified, same seed; the full 10k set would compress to "
        "~6.4 MB). The same calib/test sets are used by all Fashion-MNIST classifiers."
    )
    return Split(
        normalise_fmnist(x_tr),
        y_tr,
        normalise_fmnist(x_tr[calib_idx]),
        y_tr[calib_idx],
        normalise_fmnist(x_te[test_idx]),
        y_te[test_idx],
        description,
    )


# ---------------------------------------------------------------------- segmentation


def make_canvases(
    images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paste 2-4 random items per 64x64 canvas; later items overwrite earlier ones.

    Returns ``(pixels uint8 [count,64,64], masks int64 [count,64,64])`` where a mask
    pixel is ``class + 1`` where the topmost item there has intensity > threshold,
    else 0 (background). Pixels below the threshold are not pasted either, so image and
    mask always agree about which item is visible.
    """
    size = images.shape[-1]
    canvas = np.zeros((count, SEG_CANVAS, SEG_CANVAS), dtype=np.uint8)
    masks = np.zeros((count, SEG_CANVAS, SEG_CANVAS), dtype=np.int64)
    for i in range(count):
        for idx in rng.choice(len(images), size=rng.integers(2, 5), replace=False):
            top, left = rng.integers(0, SEG_CANVAS - size + 1, size=2)
            item = images[idx]
            fg = item > SEG_THRESHOLD
            window = (i, slice(top, top + size), slice(left, left + size))
            canvas[window] = np.where(fg, item, canvas[window])
            masks[window] = np.where(fg, labels[idx] + 1, masks[window])
    return canvas, masks


def seg_split(seed: int, train: int = 12000, calib: int = 64, test: int = 500) -> Split:
    """Segmentation canvases: train from the FMNIST train split, calib/test from t10k."""
    x_tr, y_tr = load_fmnist_raw("train")
    x_te, y_te = load_fmnist_raw("t10k")
    rng = np.random.default_rng(seed)
    train_px, train_mask = make_canvases(x_tr, y_tr, train, rng)
    held_px, held_mask = make_canvases(x_te, y_te, calib + test, rng)
    description = (
        f"Synthetic {SEG_CANVAS}x{SEG_CANVAS} canvases, each with 2-4 Fashion-MNIST items "
        "pasted at uniformly random positions (partial overlaps allowed; later items "
        f"overwrite earlier ones). A pixel belongs to an item where its intensity is > "
        f"{SEG_THRESHOLD}/255; label = FMNIST class + 1, background = 0 "
        f"({SEG_NUM_CLASSES} classes). train = {train} canvases from the FMNIST train "
        f"split; calib = {calib} and test = {test} canvases from the FMNIST test split "
        f"(numpy seed {seed})."
    )
    return Split(
        normalise_fmnist(train_px),
        train_mask,
        normalise_fmnist(held_px[:calib]),
        held_mask[:calib],
        normalise_fmnist(held_px[calib:]),
        held_mask[calib:],
        description,
    )
