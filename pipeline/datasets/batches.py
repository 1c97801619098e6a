"""Minibatches for training steps: seeded order, Keras' real-time augmentation,
on the host or wherever the images live (a GPU)."""

from __future__ import annotations

import numpy as np

from ..core.backend import array_module


def shift_and_flip(images, rng, shift=0.1, flip=True):
    """Keras ImageDataGenerator(width_shift_range=shift, height_shift_range=shift,
    horizontal_flip=flip, fill_mode='nearest') on float images (N, H, W, C):
    per image a random sub-pixel shift of up to `shift` of each side, bilinear,
    edges repeated, then a left-right flip with probability 1/2."""
    n, h, w, _ = images.shape
    dy = rng.uniform(-shift, shift, n) * h
    dx = rng.uniform(-shift, shift, n) * w
    ys = np.clip(np.arange(h)[None, :] - dy[:, None], 0, h - 1)  # source rows (N, H)
    xs = np.clip(np.arange(w)[None, :] - dx[:, None], 0, w - 1)  # source cols (N, W)
    y0, x0 = np.floor(ys).astype(np.intp), np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(images.dtype)[:, :, None, None]
    wx = (xs - x0).astype(images.dtype)[:, None, :, None]
    flipped = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    # The draws and the per-image indices and weights are small: made on the
    # host from `rng`, then used wherever the images are (host or GPU).
    xp = array_module(images)
    y0, y1, x0, x1, wy, wx, flipped = (xp.asarray(a) for a in (y0, y1, x0, x1, wy, wx, flipped))
    idx = xp.arange(n)[:, None, None]
    top = (
        images[idx, y0[:, :, None], x0[:, None, :]] * (1 - wx)
        + images[idx, y0[:, :, None], x1[:, None, :]] * wx
    )
    bottom = (
        images[idx, y1[:, :, None], x0[:, None, :]] * (1 - wx)
        + images[idx, y1[:, :, None], x1[:, None, :]] * wx
    )
    out = top * (1 - wy) + bottom * wy
    return xp.where(flipped[:, None, None, None], out[:, :, ::-1], out) if flip else out


def batches(images, targets, batch_size, rng, *, shuffle=True, augment=False, drop_last=False):
    """Minibatches (float32 images in [0, 1], targets) for one epoch.

    `targets` is the labels array, or a dict of per-example arrays such as
    {"labels": ..., "negative": ...}; each batch holds the same structure, with
    labels as int64. `rng` (a numpy Generator) decides the order and the
    augmentation, so one seed fixes the whole stream, on the host or on a GPU
    (the arrays may live there). `augment` applies `shift_and_flip`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    xp = array_module(images)
    n = len(images)
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        index = xp.asarray(order[start : start + batch_size])
        x = images[index].astype(np.float32)
        x /= 255.0
        if augment:
            x = shift_and_flip(x, rng)
        if isinstance(targets, dict):
            yield (
                x,
                {
                    name: a[index].astype(np.int64) if name == "labels" else a[index]
                    for name, a in targets.items()
                },
            )
        else:
            yield x, targets[index].astype(np.int64)
