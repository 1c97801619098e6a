"""Data: the registry of datasets, downloads (fetch), raw files -> one HDF5 file
(prepare, folders, hdf5), and the minibatches of a training step (batches).
Imports pipeline.common, and pipeline.core's array backends for batches."""
