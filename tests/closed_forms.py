"""Each loss's gradient with respect to one example's logits, in closed form,
in float64: the formulas of docs/losses.md, written out to check autograd's.

p = softmax(z), c the label (for a wrong-label loss, l = `wrong`, the label known to be
wrong), e_c its one-hot row; for the Keras forms p~ = clip(p, eps, 1 - eps) and
m_k = 1 where eps <= p_k <= 1 - eps (TensorFlow's clip passes the gradient there
alone). Every function maps (z (C,), c, **options) to dl/dz (C,).
"""

import numpy as np

EPS = 1e-7


def _p(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _not(z, k):
    """1 - p_k, summed from the other classes (1 - p_k itself rounds to 0 for a confident row)."""
    p = _p(z)
    return p.sum() - p[k] if p[k] < 0.5 else np.delete(p, k).sum()


def _through_softmax(p, d_p):
    """dl/dz from dl/dp: p_j (dl/dp_j - sum_k p_k dl/dp_k)."""
    return p * (d_p - np.dot(p, d_p))


def ce(z, c):
    return _p(z) - np.eye(len(z))[c]


def bce(z, c):
    """-log p_c - sum_{k != c} log(1 - p_k): p - e_c + r - p R, r_k = p_k / (1 - p_k) off c, R = sum r."""
    p = _p(z)
    r = np.array([p[k] / _not(z, k) if k != c else 0.0 for k in range(len(z))])
    return p - np.eye(len(z))[c] + r - p * r.sum()


def nllr(z, c):
    """-z_c + logsumexp_{k != c} z_k: -1 on the true class, q_k = p_k / (1 - p_c) on the others."""
    others = np.delete(z, c)
    g = np.insert(np.exp(others - others.max()) / np.exp(others - others.max()).sum(), c, -1.0)
    return g


def mse(z, c):
    p = _p(z)
    return _through_softmax(p, 2 * (p - np.eye(len(z))[c]))


def complement(z, wrong):
    """-log(1 - p_l): p_l on l, -p_l p_k / (1 - p_l) on the others."""
    p = _p(z)
    g = -p[wrong] * p / _not(z, wrong)
    g[wrong] = p[wrong]
    return g


def negated_ce(z, wrong):
    return np.eye(len(z))[wrong] - _p(z)


def scl_exp(z, wrong):
    p = _p(z)
    return np.exp(p[wrong]) * p[wrong] * (np.eye(len(z))[wrong] - p)


def pc(z, wrong):
    """sum_{k != wrong} s_k, s_k = sigmoid(z_l - z_k): -s_k (1 - s_k) on k, their sum on wrong."""
    s = 1 / (1 + np.exp(-(z[wrong] - z)))
    g = -s * (1 - s)
    g[wrong] = 0
    g[wrong] = -g.sum()
    return g


def _keras(z, c, d_clipped):
    """A Keras form: dl/dp~ (of p~) times the clip's mask, then through the softmax."""
    p = _p(z)
    clipped = np.clip(p, EPS, 1 - EPS)
    inside = (p >= EPS) & (p <= 1 - EPS)
    return _through_softmax(p, d_clipped(clipped, np.eye(len(z))[c]) * inside)


def ce_keras(z, c):
    return _keras(z, c, lambda q, y: -y / q)


def bce_keras(z, c):
    return _keras(z, c, lambda q, y: ((1 - y) / (1 - q) - y / q) / len(q))


def nllr_keras(z, c):
    return _keras(z, c, lambda q, y: (1 - y) / np.dot(1 - y, q) - y / np.dot(y, q))


def label_smoothing(z, c, eps=0.1):
    return _p(z) - ((1 - eps) * np.eye(len(z))[c] + eps / len(z))


def _on_p_c(z, c, d_p_c):
    """A loss of p_c alone: dl/dp_c p_c (e_c - p)."""
    p = _p(z)
    return d_p_c(p[c]) * p[c] * (np.eye(len(z))[c] - p)


def focal(z, c, gamma=2.0):
    return _on_p_c(z, c, lambda q: gamma * (1 - q) ** (gamma - 1) * np.log(q) - (1 - q) ** gamma / q)


def poly1(z, c, eps=1.0):
    return ce(z, c) * (1 + eps * _p(z)[c])


def crl(z, c, alpha=1.0, beta=0.25):
    """log((alpha - p~_c)^beta / p~_c + 1e-7), zero outside the clip."""
    q = np.clip(_p(z)[c], EPS, 1 - EPS)
    u = (alpha - q) ** beta / q
    d_u = (-beta * (alpha - q) ** (beta - 1) * q - (alpha - q) ** beta) / q**2
    inside = EPS <= _p(z)[c] <= 1 - EPS
    return _on_p_c(z, c, lambda _: d_u / (u + EPS) * inside)


def squared_hinge(z, c):
    t = 2 * np.eye(len(z))[c] - 1
    return -2 * t * np.maximum(0, 1 - t * z)


def square_logits(z, c, k=1.0, m=1.0):
    onehot = np.eye(len(z))[c]
    return 2 * (1 + (k - 1) * onehot) * (z - m * onehot) / len(z)


GRADIENTS = {
    f.__name__: f
    for f in (
        ce,
        bce,
        nllr,
        mse,
        complement,
        negated_ce,
        scl_exp,
        pc,
        ce_keras,
        bce_keras,
        nllr_keras,
        label_smoothing,
        focal,
        poly1,
        crl,
        squared_hinge,
        square_logits,
    )
}
