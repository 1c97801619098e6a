"""CPU-only code: the thread pool that deals blocks of work to the cores, and
the compiled (numba) loops for convolutions, pooling, softmax rows, optimizer
updates and dropout masks. Imports pipeline.common only; a GPU run loads none
of the compiled modules."""
