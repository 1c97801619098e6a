"""Training runs: the run's config, the training loop, inference and metrics,
checkpoints and the run directory's files, evaluation, negative feedback and
the 2-D toy. Imports pipeline.datasets, pipeline.core, pipeline.kernels and
pipeline.common."""
