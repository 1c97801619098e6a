"""An independent oracle: mlp, mnist_cnn and cifar_cnn written again in
PyTorch (CPU), given softloss' weights, inputs and dropout masks, in training
mode: the logits, the cross-entropy and every weight gradient agree to float32
precision. PyTorch's convolutions, pooling and autograd share no code with
softloss' Winograd and im2col kernels, blocks and VJPs."""

import numpy as np
import pytest

from pipeline.core import layers, models
from pipeline.core.autodiff import value_and_grad
from pipeline.core.losses import ce
from pipeline.core.settings import SETTINGS

torch = pytest.importorskip("torch", reason="the oracle needs PyTorch (the test extra: torch==2.13.0)")
F = torch.nn.functional

# Both sides compute in float32 and round differently, so neither is exact:
# each is measured against PyTorch in float64 on the same weights. With direct
# convolutions (im2col + GEMM, as PyTorch's) softloss may be off the exact value
# by at most TOLERANCE times what PyTorch's own float32 is, plus 1e-6 of the
# array's largest entry for arrays PyTorch happens to get nearly exact.
TOLERANCE, FLOOR = 4.0, 1e-6
# With the default convolutions, Winograd F(4x4, 3x3) on the wide 3x3 layers:
# its transforms amplify float32 rounding (tests/test_winograd.py allows 1e-5
# of a layer's largest output), and the first layer's kernel gradient sums
# that error over the batch, where terms cancel: measured 1.6e-4 of that
# gradient's largest entry on mnist_cnn. Allowed: 5e-4 of each array's largest entry.
WINOGRAD = 5e-4

ARCHITECTURES = {
    # (input shape, [layer, ...]) with the layers as softloss' models build them
    "mlp": ((28, 28, 1), ["flatten", ("dense", "relu"), ("dense", None)]),
    "mnist_cnn": (
        (28, 28, 1),
        [
            ("conv", 0, "relu"),
            ("conv", 0, "relu"),
            "pool",
            "dropout",
            "flatten",
            ("dense", "relu"),
            "dropout",
            ("dense", None),
        ],
    ),
    "cifar_cnn": (
        (32, 32, 3),
        [
            ("conv", 1, "relu"),
            ("conv", 0, "relu"),
            "pool",
            "dropout",
            ("conv", 1, "relu"),
            ("conv", 0, "relu"),
            "pool",
            "dropout",
            "flatten",
            ("dense", "relu"),
            "dropout",
            ("dense", None),
        ],
    ),
}


def _torch_forward(plan, params, x, masks):
    """The network of `plan` in PyTorch, NHWC as softloss holds it (convolutions
    in NCHW between transposes), on softloss' parameters and dropout masks."""
    h = x
    masks = iter(masks)
    for layer, weights in zip(plan, params):
        if layer == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif layer == "pool":
            h = F.max_pool2d(h.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
        elif layer == "dropout":
            h = h * next(masks)
        elif layer[0] == "conv":
            kernel, bias = weights
            out = F.conv2d(h.permute(0, 3, 1, 2), kernel.permute(3, 2, 0, 1), bias, padding=layer[1])
            h = out.permute(0, 2, 3, 1)
            h = F.relu(h) if layer[2] == "relu" else h
        else:
            kernel, bias = weights
            h = h @ kernel + bias
            h = F.relu(h) if layer[1] == "relu" else h
    return h


CASES = [
    ("mlp", "direct"),
    *((name, conv) for name in ("mnist_cnn", "cifar_cnn") for conv in ("direct", "auto")),
]


@pytest.mark.parametrize("name, convolution", CASES)
def test_softloss_and_pytorch_agree_on_logits_loss_and_every_gradient(name, convolution, monkeypatch):
    shape, plan = ARCHITECTURES[name]
    init, apply = models.build(name)
    params = init(np.random.default_rng(0), shape)
    data = np.random.default_rng(1)
    x = data.random((64, *shape), dtype=np.float32)
    y = data.integers(0, 10, 64)
    masks, draw = [], layers.dropout_mask
    monkeypatch.setattr(layers, "dropout_mask", lambda *a: masks.append(draw(*a)) or masks[-1])

    with SETTINGS.using(convolution=convolution):
        (loss, logits), grads = value_and_grad(
            lambda p: (lambda z: (ce(z, y), z))(apply(p, x, train=True, rng=np.random.default_rng(2))),
            has_aux=True,
        )(params)
    assert len(masks) == plan.count("dropout")
    single, exact = (_torch(plan, params, x, y, masks, dtype) for dtype in (torch.float32, torch.float64))
    ours = [logits, np.array(loss), *(w for layer in grads for w in layer)]
    names = [
        "logits",
        "loss",
        *(f"layer {i} weight {j}" for i, layer in enumerate(grads) for j in range(len(layer))),
    ]
    for what, mine, theirs, truth in zip(names, ours, single, exact):
        assert mine.shape == truth.shape and mine.dtype == np.float32, what
        ours_off, theirs_off, largest = (np.max(np.abs(a)) for a in (mine - truth, theirs - truth, truth))
        allowed = TOLERANCE * theirs_off + FLOOR * largest if convolution == "direct" else WINOGRAD * largest
        assert ours_off <= allowed, (
            f"{what}: {ours_off:.3g} off the exact value, PyTorch's float32 {theirs_off:.3g}"
        )


def _torch(plan, params, x, y, masks, dtype):
    """[logits, loss, every weight gradient] of the PyTorch network in `dtype`, as float64 NumPy arrays."""
    weights = [
        [torch.tensor(np.asarray(w), dtype=dtype, requires_grad=True) for w in layer] for layer in params
    ]
    logits = _torch_forward(
        plan, weights, torch.tensor(x, dtype=dtype), [torch.tensor(m, dtype=dtype) for m in masks]
    )
    loss = F.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    found = [logits.detach(), loss.detach(), *(w.grad for layer in weights for w in layer)]
    return [t.numpy().astype(np.float64) for t in found]
