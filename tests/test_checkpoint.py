"""Checkpointing: rotation, bit-exact restore of optax states, shardings (1 and 8 devices),
corrupt/half-written/mismatched checkpoints, SIGTERM flag."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from adaring_jax.job.checkpoint import Checkpointer, CheckpointError, install_sigterm_flag
OPTIMIZERS = {
    "sgd": lambda: optax.chain(optax.add_decayed_weights(5e-4),
                               optax.sgd(optax.cosine_decay_schedule(0.1, 100), momentum=0.9)),
    "adamw": lambda: optax.adamw(1e-3, weight_decay=0.01),
}


def _adapters(seed=0):
    r = np.random.default_rng(seed)
    f = lambda *s: jnp.asarray(r.standard_normal(s), jnp.float32)  # noqa: E731
    return {"vision": {"down": f(3, 8, 4), "bias": f(3, 4)},
            "banks": [{"core0": f(2, 3, 2), "cores": [f(2, 4, 2), f(2, 2, 2)]}, {"gate": f(3)}]}


def _train_states(opt="sgd", steps=5):
    """States after 1..steps optimizer updates: {step: state}."""
    tx = OPTIMIZERS[opt]()
    params = _adapters()
    opt_state = tx.init(params)
    key = jax.random.key(0)
    out = {}
    for step in range(1, steps + 1):
        grads = jax.tree.map(lambda p: jnp.sin(p * step), params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        key, _ = jax.random.split(key)
        out[step] = {"adapters": params, "opt_state": opt_state, "step": jnp.int32(step),
                     "rng": jax.random.key_data(key)}
    return out


def _abstract(state, sharding=None):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding), state)


def _assert_bit_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)  # namedtuple types included
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


def _saved(tmp_path, steps=(1, 2)):
    states = _train_states(steps=max(steps))
    with Checkpointer(tmp_path / "run", max_to_keep=3) as ck:
        for s in steps:
            ck.save(s, states[s])
    return tmp_path / "run", states


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_rotation_and_bit_exact_restore(tmp_path, opt):
    states = _train_states(opt)
    expected = jax.tree.map(np.array, states)
    ck = Checkpointer(str(tmp_path / "run"), max_to_keep=2)
    assert ck.latest_step() is None
    for step, state in states.items():
        ck.save(step, state)
        ck.save(step, state, force=True)  # same step again (final save after a periodic one): no-op
    for x in jax.tree.leaves(states[5]):
        x.delete()  # like buffer donation: the async save must already hold its own copy
    ck.wait()
    assert sorted(os.listdir(tmp_path / "run")) == ["4", "5"]
    assert ck.latest_step() == 5
    template = _abstract(states[4])
    _assert_bit_equal(ck.restore(template), expected[5])
    _assert_bit_equal(ck.restore(template, step=4), expected[4])
    ck.close()
    with Checkpointer(str(tmp_path / "run"), max_to_keep=2) as ck:  # reopen
        assert ck.latest_step() == 5
        _assert_bit_equal(ck.restore(states[4]), expected[5])  # concrete arrays as the template
        with pytest.raises(CheckpointError, match="step 3"):
            ck.restore(template, step=3)


def _sharded_roundtrip(directory):
    """Save arrays replicated (and one sharded) over a 1-D mesh of all devices; restore with the
    template's sharding. Run in-process (1 device) and in a subprocess with 8 CPU devices."""
    n = len(jax.devices())
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put(_train_states()[2], rep)
    rows = jnp.arange(8 * n * 3, dtype=jnp.float32).reshape(8 * n, 3)
    state["adapters"]["rows"] = jax.device_put(rows, split)
    expected = jax.tree.map(np.array, state)
    with Checkpointer(directory) as ck:
        ck.save(2, state)
        ck.wait()
        template = _abstract(state, rep)
        template["adapters"]["rows"] = jax.ShapeDtypeStruct((8 * n, 3), jnp.float32, sharding=split)
        got = ck.restore(template)
    _assert_bit_equal(got, expected)
    for g, t in zip(jax.tree.leaves(got), jax.tree.leaves(template)):
        assert g.sharding == t.sharding and len(g.addressable_shards) == n
    return n


def test_restore_named_sharding(tmp_path):
    assert _sharded_roundtrip(str(tmp_path / "run")) == len(jax.devices())


def test_restore_named_sharding_8_devices(tmp_path):
    import conftest  # here, not at the top: this file also runs as the 8-device script
    env = dict(os.environ, XLA_FLAGS=conftest.xla_flags(8),
               JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, __file__, str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "devices=8 ok" in proc.stdout


def _corrupt(step_dir, how):
    data = [f for f in glob.glob(f"{step_dir}/**/d/*", recursive=True) if os.path.isfile(f)]
    assert data
    if how == "garbage":
        for f in data:
            with open(f, "wb") as fh:
                fh.write(b"not a checkpoint " * 3)
    elif how == "truncate":
        for f in data:
            os.truncate(f, os.path.getsize(f) // 2)
    elif how == "delete_manifest":
        os.remove(f"{step_dir}/default/manifest.ocdbt")
    elif how == "delete_metadata":
        os.remove(f"{step_dir}/default/_METADATA")
    elif how == "delete_item":
        shutil.rmtree(f"{step_dir}/default")


# A failed read can leave a TensorStore callback aimed at Orbax's closed event loop: harmless noise.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize(
    "how", ["garbage", "truncate", "delete_manifest", "delete_metadata", "delete_item"])
def test_corrupt_checkpoint_raises(tmp_path, how):
    run, states = _saved(tmp_path)
    _corrupt(run / "2", how)
    with Checkpointer(run) as ck:
        assert ck.latest_step() == 2
        with pytest.raises(CheckpointError) as err:
            ck.restore(_abstract(states[2]))
        msg = str(err.value)
        assert "step 2" in msg and str(run) in msg and "move" in msg, msg
        _assert_bit_equal(ck.restore(_abstract(states[1]), step=1), states[1])  # older step is fine


def test_half_written_step_is_ignored_and_cleaned(tmp_path):
    run, states = _saved(tmp_path)
    shutil.copytree(run / "2", run / "3.orbax-checkpoint-tmp")  # a save cut short by a crash
    os.remove(run / "3.orbax-checkpoint-tmp" / "default" / "_METADATA")
    with Checkpointer(run) as ck:
        assert ck.latest_step() == 2
        _assert_bit_equal(ck.restore(_abstract(states[2])), states[2])
        ck.save(3, states[2])
        ck.wait()
        assert ck.latest_step() == 3
    assert sorted(os.listdir(run)) == ["1", "2", "3"]


def _extra(s):
    s["adapters"]["new"] = jnp.zeros(3)


def _missing(s):
    del s["adapters"]["banks"][1]["gate"]


def _shape(s):
    s["adapters"]["vision"]["down"] = jnp.zeros((3, 8, 5))


def _dtype(s):  # Orbax alone would cast the int32 count to float32
    decay, (trace, schedule) = s["opt_state"]
    s["opt_state"] = (decay, (trace, schedule._replace(count=jnp.float32(0))))


def _optimizer(s):
    s["opt_state"] = optax.adamw(1e-3).init(s["adapters"])


@pytest.mark.parametrize("change", [_extra, _missing, _shape, _dtype, _optimizer],
                         ids=lambda f: f.__name__)
def test_mismatched_template_raises(tmp_path, change):
    run, states = _saved(tmp_path, steps=(2,))
    state = jax.tree.map(lambda x: x, states[2])  # fresh containers, same leaves
    change(state)
    with Checkpointer(run) as ck, pytest.raises(CheckpointError, match="step 2"):
        ck.restore(_abstract(state))


def test_sigterm_flag():
    previous = signal.getsignal(signal.SIGTERM)
    try:
        requested = install_sigterm_flag()
        assert not requested()
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(100):
            if requested():
                break
            time.sleep(0.01)
        assert requested()  # and we are still running
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # the 8-device subprocess of test_restore_named_sharding_8_devices
    assert len(jax.devices()) == 8, jax.devices()
    print(f"devices={_sharded_roundtrip(sys.argv[1])} ok")


def test_a_save_the_disk_cannot_hold_is_refused_before_orbax_writes(tmp_path, monkeypatch):
    """Orbax cut short by a full disk leaves screenfuls of writer-thread tracebacks, so a save
    that does not fit is refused up front; the steps already saved stay restorable."""
    directory, _ = _saved(tmp_path, steps=(1,))
    states = _train_states(steps=2)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: real(p)._replace(free=2**20))  # 1 MiB: less than 1 MiB + 2x
    with Checkpointer(directory) as ck:
        with pytest.raises(OSError, match="No space left on device") as e:
            ck.save(2, states[2])
        assert e.value.errno == 28 and e.value.filename == str(directory)
        assert ck.all_steps() == [1]
    assert sorted(os.listdir(directory)) == ["1"]
    monkeypatch.setattr(shutil, "disk_usage", real)
    with Checkpointer(directory) as ck:
        _assert_bit_equal(ck.restore(_abstract(states[1])), states[1])
