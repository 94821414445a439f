"""One code path for 1 CPU, 8 GPUs or a TPU pod: a 1-D `data` mesh over all devices.

Batches (images and the class-prompt batch of the text tower) are sharded over `data`; adapter
params and optimizer state are replicated (they are kilobytes). The frozen backbone is
replicated, or with `fsdp` each large weight is split over `data` along its largest divisible
axis (ZeRO-3 style; XLA gathers it where it is used), for backbones that do not fit one device.
Multi-host: each process passes its own rows and `jax.make_array_from_process_local_data`
assembles the global array.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh() -> jax.sharding.Mesh:
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
    return NamedSharding(mesh, P("data"))


def backbone_shardings(params, mesh, fsdp: bool = False, min_size: int = 2 ** 18):
    """Replicated, or (fsdp) weights of >= min_size elements split along their largest axis
    divisible by the number of devices."""
    n = mesh.devices.size

    def spec(x):
        if not fsdp or x.size < min_size:
            return replicated(mesh)
        axes = [a for a in np.argsort(x.shape)[::-1] if x.shape[a] % n == 0]
        if not axes:
            return replicated(mesh)
        parts = [None] * x.ndim
        parts[axes[0]] = "data"
        return NamedSharding(mesh, P(*parts))

    return jax.tree.map(spec, params)


def global_batch(local: dict, mesh) -> dict:
    """Process-local rows -> global arrays sharded over `data`."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in local.items()}


def pad_rows(x: np.ndarray, multiple: int) -> np.ndarray:
    """Repeat the first row so that len(x) is a multiple of `multiple` (for even sharding)."""
    extra = (-len(x)) % multiple
    return x if not extra else np.concatenate([x, np.repeat(x[:1], extra, axis=0)])
