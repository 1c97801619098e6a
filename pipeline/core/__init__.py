"""The differentiable program: parameter trees, autograd's value-and-gradient,
the array backends (NumPy, CuPy), primitives with hand-written VJPs, layers,
models, losses and optimizers. Imports pipeline.kernels and pipeline.common."""
