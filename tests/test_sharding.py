"""FSDP-sharded backbone weights give the same features as replicated ones (8 CPU devices)."""

import os
import subprocess
import sys

import conftest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import jax, numpy as np
from adaring_jax.job import sharding
from adaring_jax.models import clip
assert jax.device_count() == 8
mesh = sharding.make_mesh()
model = clip.preset("tiny")
params = clip.init_params(model, jax.random.key(0))
specs = sharding.backbone_shardings(params, mesh, fsdp=True, min_size=1024)
split = [s for s in jax.tree.leaves(specs) if s.spec != jax.sharding.PartitionSpec()]
assert len(split) >= 10, len(split)  # the big kernels and embeddings are split over data
sharded = jax.device_put(params, specs)
pixels = jax.device_put(np.random.default_rng(0).standard_normal((8, 32, 32, 3), np.float32),
                        sharding.batch_sharded(mesh))
a = clip.encode_image(model, sharded, pixels)
b = clip.encode_image(model, jax.device_put(params, sharding.replicated(mesh)), pixels)
np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
print("ok", len(split))
"""


def test_fsdp_backbone_matches_replicated():
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=conftest.xla_flags(8))
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")
