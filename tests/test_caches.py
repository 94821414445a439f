"""The per-user caches: where they live, the opt-outs, and a second identical run that
compiles nothing new and gives the same results."""

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from adaring_jax import caches
from conftest import ROOT


def test_where_the_caches_live():
    home = os.path.expanduser("~")
    assert caches.compilation_dir({}) == os.path.join(home, ".cache", "adaring-jax", "xla")
    assert caches.zeroshot_dir({}) == os.path.join(home, ".cache", "adaring-jax", "zeroshot")
    assert caches.compilation_dir({"XDG_CACHE_HOME": "/c"}) == "/c/adaring-jax/xla"
    assert caches.zeroshot_dir({"ADARING_CACHE_DIR": "/a", "XDG_CACHE_HOME": "/c"}) == \
        "/a/zeroshot"
    assert caches.compilation_dir({"XDG_CACHE_HOME": "/c",
                                   "JAX_COMPILATION_CACHE_DIR": "/j"}) == "/j"
    for off in ("0", "off", "False"):
        for var in ("ADARING_CACHE", "ADARING_COMPILATION_CACHE"):
            assert caches.compilation_dir({var: off, "JAX_COMPILATION_CACHE_DIR": "/j"}) is None
        assert caches.zeroshot_dir({"ADARING_ZEROSHOT_CACHE": off}) is None
    assert caches.zeroshot_dir({"ADARING_COMPILATION_CACHE": "0"}) is not None


def _smoke(tmp_path, name, *flags, **env):
    environ = {k: v for k, v in os.environ.items()  # the product's cache settings
               if k not in ("JAX_COMPILATION_CACHE_DIR", "ADARING_COMPILATION_CACHE_MIN_SECONDS")}
    environ.update(HF_HUB_OFFLINE="1", JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "xdg"),
                   **env)
    out = subprocess.run([sys.executable, "-m", "adaring_jax.main",
                          "--config=configs/fewshot.py:smoke", f"--workdir={tmp_path / name}",
                          *flags],
                         cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    _smoke.stderr = out.stderr
    with open(tmp_path / name / "results.json") as f:
        results = json.load(f)
    return {k: results[k] for k in ("zeroshot", "adapted")}


def _entries(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two identical smoke commands in one empty cache folder: the first fills the caches, the
    second reads them. What each left: results, XLA programs, zero-shot entries and their
    modification times (after the first run and after the second)."""
    top = tmp_path_factory.mktemp("two_runs")
    xla, zero = top / "xdg" / "adaring-jax" / "xla", top / "xdg" / "adaring-jax" / "zeroshot"
    first = _smoke(top, "a")
    after_first = (_entries(xla), sorted(zero.rglob("*.json")))
    stamps_first = [p.stat().st_mtime_ns for p in after_first[1]]
    second = _smoke(top, "b")
    stamps_second = [p.stat().st_mtime_ns for p in after_first[1]]
    return {"top": top, "first": first, "second": second, "programs": after_first[0],
            "programs_second": _entries(xla), "zeroshot": after_first[1],
            "stamps": (stamps_first, stamps_second)}


def test_second_run_compiles_nothing_new_and_the_results_are_the_same(two_runs):
    top, first = two_runs["top"], two_runs["first"]
    entries = two_runs["programs"]
    assert len(entries) >= 3  # the training step and the evaluation programs at least
    assert two_runs["second"] == first
    # The first run measured zero-shot and adapted accuracy in one pass over the images; the
    # second reads zero-shot from its cache and compiles the adapted-only evaluation once.
    second = two_runs["programs_second"]
    # Eager jnp ops ("jit__einsum", ...) compile in about the cache's 0.2 s threshold, so
    # whether a run stores them depends on the machine's load: not counted here.
    new = [e for e in set(second) - set(entries) if not e.startswith("jit__")]
    assert set(entries) <= set(second) and len(new) <= 1, new
    assert _smoke(top, "c") == first
    assert _entries(top / "xdg" / "adaring-jax" / "xla") == second  # all from the cache


def test_opt_out_writes_no_cache_and_gives_the_same_results(two_runs, tmp_path):
    assert _smoke(tmp_path, "d", ADARING_CACHE="0") == two_runs["first"]
    assert not (tmp_path / "xdg").exists()


def test_zero_shot_key_changes_with_every_input_it_depends_on(tmp_path, monkeypatch):
    import numpy as np

    from adaring_jax.data import shapes, shapes_suite
    from adaring_jax.data.source import Subset
    from adaring_jax.data.sources import FolderSource
    from adaring_jax.job import zeroshot_cache as zc
    monkeypatch.setenv("ADARING_CACHE_DIR", str(tmp_path / "c"))
    ids = np.arange(12).reshape(3, 4)
    src = shapes.ShapesSource("test", "target", size=64)
    idx = np.arange(10)

    def key(weights="w", ids=ids, source=src, indices=idx, size=32, batch=64, devices=1):
        return zc.key(weights, ids, source, indices, size, batch, devices)

    base = key()
    assert base is not None and key() == base
    changed = [key(weights="v"), key(ids=ids + 1), key(ids=ids.reshape(4, 3)),
               key(indices=idx + 1), key(source=shapes.ShapesSource("test", "target", 64,
                                                                   seed=1)),
               key(source=shapes.ShapesSource("test", "pretrain", size=64)),
               key(source=shapes_suite.SuiteSource("shapes_mild", "test", size=64)),
               key(source=Subset(src, np.arange(64)[::-1])),
               key(size=64), key(batch=32), key(devices=8)]
    assert len(set(changed)) == len(changed) and base not in changed
    assert key(source=Subset(src, np.arange(64))) == base  # the same images, the same labels
    relabelled = Subset(src, np.arange(64), label_map=np.arange(64)[::-1])
    assert key(source=relabelled) != base

    (tmp_path / "img").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "img" / name).write_bytes(b"x")
    folder = FolderSource(str(tmp_path / "img"), [("a.png", 0), ("b.png", 1)], ["a", "b"],
                          "{}", str(tmp_path), "test")
    before = key(source=folder, indices=np.arange(2))
    os.utime(tmp_path / "img" / "b.png", ns=(1, 1))
    assert key(source=folder, indices=np.arange(2)) not in (None, before)

    class Other:  # a source the cache cannot describe (TFDS): never cached
        def labels(self):
            return np.zeros(64, np.int64)
    assert key(source=Other()) is None
    monkeypatch.setenv("ADARING_ZEROSHOT_CACHE", "0")
    assert key() is None

    monkeypatch.delenv("ADARING_ZEROSHOT_CACHE")
    zc.store(base, 12.5, 10)
    assert zc.load(base) == (12.5, 10)
    path = tmp_path / "c" / "zeroshot" / base[:2] / f"{base}.json"
    path.write_text("{not json")
    assert zc.load(base) is None  # a broken entry is a miss, recomputed
    path.write_text('{"key": "other", "accuracy": 1, "counted": 1}')
    assert zc.load(base) is None
    zc.store(base, 12.5, 10)
    path.write_text(path.read_text().replace("12.5", "13.5"))  # the value, not its digest
    assert zc.load(base) is None


def test_a_run_reuses_zero_shot_and_recomputes_when_its_inputs_change(two_runs, tmp_path):
    shutil.copytree(two_runs["top"] / "xdg", tmp_path / "xdg")  # the two runs' caches
    zero = tmp_path / "xdg" / "adaring-jax" / "zeroshot"
    first = two_runs["first"]
    assert len(two_runs["zeroshot"]) == 2  # base and novel
    assert two_runs["second"] == first  # read back, not rewritten:
    assert two_runs["stamps"][1] == two_runs["stamps"][0]
    entries = sorted(zero.rglob("*.json"))
    assert len(entries) == 2  # base and novel
    for p in entries:  # a wrong cached value would show: the run must not trust a changed one
        value = json.loads(p.read_text())
        p.write_text(json.dumps({**value, "accuracy": 99.0}))
    # A bit flipped in every rendered-image entry (the same size and shape): not used either.
    images = sorted((tmp_path / "xdg" / "adaring-jax" / "images").rglob("*.images"))
    assert images
    for p in images:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x10
        p.write_bytes(bytes(data))
    assert _smoke(tmp_path, "c") == first
    assert "rendered-image cache entry" in _smoke.stderr and "zero-shot cache entry" in \
        _smoke.stderr, _smoke.stderr[-2000:]
    # Another test set: new entries, and the old ones are left for the runs that need them.
    _smoke(tmp_path, "d", "--config.eval.max_examples=32")
    assert len(sorted(zero.rglob("*.json"))) == 4


def test_weights_are_hashed_only_when_a_split_can_be_cached(monkeypatch, tmp_path):
    import numpy as np

    from adaring_jax.data import shapes
    from adaring_jax.job import zeroshot_cache as zc
    monkeypatch.setenv("ADARING_CACHE_DIR", str(tmp_path))

    class Other:
        def labels(self):
            return np.zeros(4, np.int64)
    assert not zc.any_cacheable([Other()])
    assert zc.any_cacheable([Other(), shapes.ShapesSource("test", size=4)])
    monkeypatch.setenv("ADARING_CACHE", "0")
    assert not zc.any_cacheable([shapes.ShapesSource("test", size=4)])


def test_malloc_tuning_applies_once_per_process_and_switches_off():
    # In a child: mallopt changes the process it runs in.
    check = ("from adaring_jax import host; import sys; "
             "print(host.tune_malloc(), host.tune_malloc({'ADARING_MALLOC_TUNING': '0'}))")
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    on = "True" if platform.libc_ver()[0] == "glibc" else "False"
    assert out.stdout.split() == [on, "False"]


def test_rendered_test_images_are_cached_byte_identical_and_keyed_by_what_they_are(
        tmp_path, monkeypatch):
    import numpy as np
    from adaring_jax.data import image_cache, shapes_suite
    from adaring_jax.data.source import Subset
    from adaring_jax import atomic

    monkeypatch.setenv("ADARING_CACHE_DIR", str(tmp_path))
    for var in ("ADARING_CACHE", "ADARING_IMAGES_CACHE"):
        monkeypatch.delenv(var, raising=False)
    base = shapes_suite.SuiteSource("shapes_lookalike", "test", size=64, image_size=16)
    view = Subset(base, np.arange(10, 50), label_map=np.arange(16)[::-1])  # relabelled view
    wanted = np.array([3, 0, 17, 39, 3])
    got, pos = image_cache.rendered(view, wanted, threads=2)
    assert list(pos) == [0, 1, 2, 3, 4]
    for j, i in enumerate(wanted):
        assert np.array_equal(got[j]["image"], view[i]["image"])
        assert got[j]["label"] == view[i]["label"]
    files = sorted((tmp_path / "images").rglob("*.images"))
    assert len(files) == 1

    # The second time they are read back, not rendered.
    def no_render(*_):
        raise AssertionError("rendered again")
    monkeypatch.setattr(shapes_suite.SuiteSource, "render_batch", no_render)
    again, _ = image_cache.rendered(view, wanted)
    assert np.array_equal(again.images, got.images)
    monkeypatch.undo()
    monkeypatch.setenv("ADARING_CACHE_DIR", str(tmp_path))

    # Another seed, image size or index set is another entry; a broken entry is rendered again.
    other = shapes_suite.SuiteSource("shapes_lookalike", "test", size=64, image_size=16, seed=1)
    image_cache.rendered(other, wanted)
    image_cache.rendered(base, wanted)
    assert len(list((tmp_path / "images").rglob("*.images"))) == 3
    files[0].write_bytes(b"not an array")
    fixed, _ = image_cache.rendered(view, wanted)
    assert np.array_equal(fixed.images, got.images)
    assert oct(files[0].stat().st_mode & 0o777) == oct(0o666 & ~atomic.umask())
    assert not list((tmp_path / "images").rglob("*.tmp"))

    # Off, or several processes: the source itself.
    monkeypatch.setenv("ADARING_IMAGES_CACHE", "0")
    assert image_cache.rendered(view, wanted)[0] is view
    monkeypatch.delenv("ADARING_IMAGES_CACHE")
    assert image_cache.rendered(view, wanted, process_count=2)[0] is view
    assert caches.images_dir({"ADARING_CACHE": "0"}) is None


def test_a_failed_image_cache_write_leaves_no_file(tmp_path, monkeypatch):
    import numpy as np
    from adaring_jax.data import image_cache

    def full(*_):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(image_cache.os, "replace", full)
    image_cache._store(str(tmp_path / "ab" / "entry.images"), np.zeros((2, 4, 4, 3), np.uint8))
    assert os.listdir(tmp_path / "ab") == []
