"""`python -m pipeline bench`: a training step's throughput, softloss beside
PyTorch and JAX (pipeline.bench.run); never imported by training."""
