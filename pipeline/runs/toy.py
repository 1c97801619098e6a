"""The 2-D toy of the Knet side study: three classes on concentric rings, where
Knet's linear softmax draws straight class boundaries and fails while a
one-hidden-layer MLP succeeds (`python -m pipeline toy --out FILE`)."""

from __future__ import annotations

import numpy as np

from ..common.files import write_json
from ..core import models, optim
from ..core.autodiff import value_and_grad
from ..core.losses import ce


def toy_data(n_per_class=150, seed=0):
    """Three classes on concentric rings: no straight line separates them."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(0, 2 * np.pi, 3 * n_per_class)
    labels = np.repeat(np.arange(3), n_per_class)
    radius = 0.3 + 0.6 * labels + rng.normal(0, 0.08, len(labels))
    points = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1).astype(np.float32)
    return points, labels


def toy_boundaries(out_path, steps=3000, grid=120, seed=0):
    """Train knet_softmax and an MLP on the rings with SGD; save their class map on a grid."""
    points, labels = toy_data(seed=seed)
    xs = np.linspace(-2.0, 2.0, grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(xs, xs), axis=-1).reshape(-1, 2)
    result = {
        "points": points.tolist(),
        "labels": labels.tolist(),
        "extent": [-2.0, 2.0],
        "grid": grid,
        "models": {},
    }
    for name, options, lr in (
        ("knet_softmax", {"n_classes": 3}, 0.5),
        ("mlp", {"hidden": 32, "n_classes": 3}, 0.5),
    ):
        rng = np.random.default_rng(seed)
        init, apply = models.build(name, **options)
        params = init(rng, (2,))
        opt = optim.sgd(lr=lr)
        state = opt.init(params)
        step = value_and_grad(lambda p, apply=apply: ce(apply(p, points), labels))
        for _ in range(steps):
            _, grads = step(params)
            params, state = opt.update(params, grads, state)
        accuracy = float(np.mean(apply(params, points).argmax(axis=1) == labels))
        result["models"][name] = {
            "accuracy": accuracy,
            "classes": apply(params, mesh).argmax(axis=1).tolist(),
        }
    write_json(out_path, result)
    return result
