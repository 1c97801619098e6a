"""Differentiable primitives with hand-written vector-Jacobian products, one
traced node each: log space (logspace), the Keras forms (keras), dense layers
(dense), convolutions (conv) and pooling (pool), on blocks of images (blocks)."""
