r"""Time to a result on the accelerator at hand (GPU, TPU, or CPU at --smoke): the tables of
issue 31 for the code of the day, in one command that fits one 8-minute call on one chip.

    python -m benchmarks.accelerator [--json=PATH]      # ~7 min on an H200 (--budget=440)
    python -m benchmarks.accelerator --smoke            # tiny sizes on CPU (tests/test_benchmarks)
    python -m benchmarks.accelerator --sections=compile # CPU: AdaRing's and MMA's ViT-B/16
                                                        # train-step compile seconds, one process

Sections (`--sections`, in this order; each runs in its own process, so one that hangs or
runs out of memory is cut off by the time guard and the others still report):
- `ceiling`: the bf16 and f32 (JAX's default precision) 8192^3 matmul, TFLOP/s;
- `steps`: the ViT-B/16 train step (`benchmarks.train_step.prepare`: random weights, cut and
  cached prompts) of adaring and mma, each at model.dtype "auto" (the default: bf16 on an
  accelerator, f32 on CPU) and bfloat16 (one row when they are the same), at batch 128 / 500
  classes and batch 16 / 50 classes: ms per step (median), analytic matmul TFLOP/s
  (`compare_torch.analytic_flops`), its share of the dtype's matmul ceiling, and XLA compile
  seconds (persistent cache off);
- `b2n`: a whole base-to-novel run (`python -m adaring_jax.main --config=configs/
  base2novel.py`) over a generated folder of JPEG classes (100 x 40 images of 500x375) with a
  random-weight ViT-B/16 checkpoint written with CLIP's real tokenizer: its phases from
  results.json with a fresh cache (cold) and again with the compiled programs cached (warm,
  zero-shot cache off so it evaluates the same images), and the evaluation's images/s apart
  from its compile (the warm run's);
- `torch` (last; the step table is printed again with its rows): the PyTorch eager MMA
  reference (`compare_torch._torch_reference`) in bf16 autocast at 77- and 16-token prompts,
  timed with device synchronisation; only where torch imports and sees the device (CUDA, or
  the CPU when JAX runs there);
- `compile` (not by default): the compile seconds of AdaRing's and MMA's ViT-B/16 train steps
  at batch 8 / 100 classes from one process, without running them (the CPU acceptance line):
  each compiled 5 times in turn from cleared caches, the median and range of each.

`--json=PATH` writes every number (rewritten after each section). `--budget` bounds the whole
command: a section gets what is left (and at most its own cap), and one cut off keeps the rows
it finished.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BPE = os.path.join(ROOT, "tests", "fixtures", "clip_bpe", "bpe_simple_vocab_16e6.txt.gz")
SECTIONS = ("ceiling", "steps", "b2n", "torch")
CAPS = {"ceiling": 60, "steps": 240, "torch": 100, "compile": 300,  # seconds per section
        "make": 90, "cold": 170, "warm": 110}
FULL = dict(arch="vit_b16", settings=[(128, 500), (16, 50)], dtypes=["auto", "bfloat16"],
            repeats=10, compile_repeats=5, matmul=8192, classes=100, per=40, size=(500, 375),
            method="adaring", overrides=[])
# Smoke: the same code at tiny size (one setting, the default dtype, a few images and steps;
# the whole run trains mma, whose step compiles faster).
SMOKE = dict(arch="tiny", settings=[(8, 16)], dtypes=["auto"], repeats=2, compile_repeats=2,
             matmul=256, classes=4, per=8, size=(64, 48), method="mma",
             overrides=["--config.optim.steps=2", "--config.optim.batch_size=4",
                        "--config.eval.batch_size=16", "--config.data.num_threads=2",
                        "--config.adapter.start=1", "--config.adapter.end=2"])
TORCH_TOKENS = (77, 16)


def _sizes(smoke: bool) -> dict:
    return SMOKE if smoke else FULL


def _dump(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def _median_seconds(fn, repeats: int) -> float:
    fn(), fn()  # warm-up
    return statistics.median(fn() for _ in range(repeats))


# ---------------------------------------------------------------------------------------------
# Sections run in child processes: each writes its rows to `out` as they complete.


def child_ceiling(smoke: bool, out: str) -> None:
    import jax
    import jax.numpy as jnp
    n = _sizes(smoke)["matmul"] if smoke or jax.default_backend() != "cpu" else 2048
    rows = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind,
            "devices": jax.device_count(), "jax": jax.__version__, "n": n}
    for dtype in ("bfloat16", "float32"):
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        f = jax.jit(lambda x, y: x @ y)

        def once():
            start = time.perf_counter()
            f(a, b).block_until_ready()
            return time.perf_counter() - start
        rows[dtype] = 2 * n ** 3 / _median_seconds(once, 3 if smoke else 10) / 1e12
        _dump(out, rows)


def _configs(method: str, smoke: bool, arch: str):
    from configs import fewshot
    return fewshot.get_config(f"arch={arch},method={method}" + (",smoke" if smoke else ""))


def child_steps(smoke: bool, out: str, compile_only: bool = False) -> None:
    from adaring_jax import adapters
    from adaring_jax.job import backbone
    from adaring_jax.models import clip
    from benchmarks import compare_torch, train_step
    s = _sizes(smoke)
    settings, dtypes = s["settings"], s["dtypes"]
    if compile_only:  # the CPU setting
        settings, dtypes = ([(8, 16)] if smoke else [(8, 100)]), ["auto"]
    rows, prepared = [], []
    for batch, classes in settings:
        for method in ("adaring", "mma"):
            seen = set()
            for dtype in dtypes:
                c = _configs(method, smoke, s["arch"])
                c.unlock()
                c.model.dtype = dtype
                compute = backbone.compute_dtype(dtype)
                if compute in seen:
                    continue  # "auto" is already this dtype here
                seen.add(compute)
                row = {"batch": batch, "classes": classes, "method": method, "dtype": dtype,
                       "compute_dtype": compute}
                try:
                    p = train_step.prepare(c, batch, classes, 10, cached=True)
                    row["compile_s"] = p["compile_s"]
                    row["attention"] = _attention_used(compute)
                    if compile_only:
                        row["compile_runs"] = [p["compile_s"]]
                        prepared.append((row, p))
                    else:
                        row["step_s"] = _median_seconds(lambda: train_step.run_once(p),
                                                        s["repeats"])
                        spec = adapters.spec_from_config(c, clip.preset(s["arch"]).config)
                        row["flops"] = compare_torch.analytic_flops(
                            s["arch"], batch, classes, p["prompt_tokens"],
                            spec.first_block("vision"), True,
                            bool(c.loss.image_l1 or c.loss.kl))
                    del p
                except Exception as e:  # noqa: BLE001 - one variant's failure hides no other
                    row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
                rows.append(row)
                _dump(out, rows)
        # Compile seconds move by 0.5-1 s from one compile to the next on a shared 2-core
        # machine: the methods compile again in turn, and each row reports the median.
        for _ in range(s["compile_repeats"] - 1 if compile_only else 0):
            for row, p in prepared:
                row["compile_runs"].append(train_step.recompile_seconds(p))
                row["compile_s"] = statistics.median(row["compile_runs"])
                _dump(out, rows)
        prepared.clear()


def _attention_used(compute_dtype: str) -> str:
    """Which attention the steps of this dtype traced so far run (`models/attention.py`)."""
    from adaring_jax.models import attention
    probed = {shape: ok for (shape, dtype, _, impl), ok in attention.PROBED.items()
              if dtype == compute_dtype and impl == attention.FUSED}
    if not probed:
        return "XLA"
    if all(probed.values()):
        return f"{attention.FUSED} fused"
    return "; ".join(f"{'x'.join(map(str, s))}: {attention.FUSED if ok else 'XLA'}"
                     for s, ok in probed.items())


def child_torch(smoke: bool, out: str) -> None:
    rows = []
    try:
        import torch
    except ImportError:
        _dump(out, {"skipped": "torch is not importable"})
        return
    backend = os.environ.get("ACCELERATOR_BACKEND", "cpu")
    if backend == "gpu" and torch.cuda.is_available():
        device = "cuda"
    elif backend == "cpu":
        device = "cpu"
    else:
        _dump(out, {"skipped": f"torch does not see the {backend} device"})
        return
    from benchmarks import compare_torch
    s = _sizes(smoke)
    for batch, classes in s["settings"]:
        for tokens in TORCH_TOKENS:
            row = {"batch": batch, "classes": classes, "tokens": tokens}
            try:
                step, _ = compare_torch._torch_reference(s["arch"], batch, classes, tokens,
                                                         device, bf16=True)

                def once():
                    if device == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    step()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    return time.perf_counter() - start
                row["step_s"] = _median_seconds(once, s["repeats"])
                row["flops"] = compare_torch.analytic_flops(s["arch"], batch, classes, tokens,
                                                            4, False, False)
                del step
            except Exception as e:  # noqa: BLE001
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            if device == "cuda":
                torch.cuda.empty_cache()
            rows.append(row)
            _dump(out, rows)


def _class_images(args) -> int:
    """One class folder of JPEGs: noise around a class colour, with an inverted square."""
    import numpy as np
    from PIL import Image
    folder, c, per, (w, h) = args
    rng = np.random.default_rng(c)
    d = os.path.join(folder, f"class_{c:03d}")
    os.makedirs(d, exist_ok=True)
    base = rng.integers(0, 255, 3)
    side = max(4, min(w, h) // 6)
    for i in range(per):
        img = rng.normal(0, 40, (h, w, 3)) + base
        y, x = rng.integers(0, h - side), rng.integers(0, w - side)
        img[y:y + side, x:x + side] = 255 - base
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
            os.path.join(d, f"{i:04d}.jpg"), quality=90)
    return per


def child_make(smoke: bool, out: str, root: str) -> None:
    """The JPEG class folder (processes first, before JAX starts) and the checkpoint."""
    from concurrent.futures import ProcessPoolExecutor
    s = _sizes(smoke)
    start = time.perf_counter()
    jobs = [(os.path.join(root, "images"), c, s["per"], s["size"]) for c in range(s["classes"])]
    with ProcessPoolExecutor(min(16, os.cpu_count() or 1)) as ex:
        n = sum(ex.map(_class_images, jobs))
    images_s = time.perf_counter() - start
    import dataclasses

    import jax
    from adaring_jax.models import clip, convert, tokenizer
    tok = os.path.join(root, "tok")
    vocab = tokenizer.write_clip_bpe(BPE, tok)
    model = clip.preset(s["arch"])
    t = model.config.text
    if t.vocab_size != vocab:  # a tiny preset: CLIP's vocabulary and context instead
        t = dataclasses.replace(t, vocab_size=vocab, context_length=77, bos_token_id=vocab - 2,
                                eos_token_id=vocab - 1, pad_token_id=vocab - 1)
        model = clip.CLIP(dataclasses.replace(model.config, text=t))
    params = jax.device_get(clip.init_params(model, jax.random.key(0, impl="unsafe_rbg")))
    convert.save_pretrained(model, params, os.path.join(root, "ckpt"), tokenizer_dir=tok)
    _dump(out, {"images": n, "images_s": images_s,
                "checkpoint_s": time.perf_counter() - start - images_s})


CHILDREN = {"ceiling": child_ceiling, "steps": child_steps, "torch": child_torch,
            "make": child_make}


# ---------------------------------------------------------------------------------------------
# The parent: runs the sections under the time guard, prints the tables.


class Guard:
    """The command's deadline; `child` runs a section with what is left (at most its cap)."""

    def __init__(self, budget: float, work: str, smoke: bool):
        self.deadline, self.work, self.smoke = time.monotonic() + budget, work, smoke

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, cmd: list, env: dict, log: str) -> tuple[int | None, float]:
        """(exit status or None when cut off, seconds) of `cmd`, its output in `log`."""
        limit = min(CAPS[name], self.left())
        if limit < 5:
            print(f"[{name}: skipped, the time budget is spent]", flush=True)
            return None, 0.0
        start = time.monotonic()
        with open(log, "w") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
                rc = None
        seconds = time.monotonic() - start
        if rc != 0:
            with open(log) as f:
                tail = f.read()[-1500:]
            why = f"cut off after {seconds:.0f} s" if rc is None else f"exit status {rc}"
            print(f"[{name}: {why}; the end of {log}:]\n{tail}", flush=True)
        return rc, seconds

    def child(self, name: str, env: dict | None = None, extra=()) -> object:
        """Run section `name` in a child process; whatever rows it wrote (None: none)."""
        out = os.path.join(self.work, f"{name}.json")
        cmd = [sys.executable, "-m", "benchmarks.accelerator", f"--child={name}",
               f"--child_out={out}", f"--root={self.work}", *extra] + \
            (["--smoke"] if self.smoke else [])
        self.run(name, cmd, env or _env(), os.path.join(self.work, f"{name}.log"))
        if not os.path.exists(out):
            return None
        with open(out) as f:
            return json.load(f)


def _env(**extra) -> dict:
    """The environment of a child: no persistent compile cache unless asked, offline hub."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="3",
               ADARING_COMPILATION_CACHE="0", PYTHONPATH=os.pathsep.join(
                   filter(None, [ROOT, os.environ.get("PYTHONPATH", "")])))
    env.update(extra)
    return env


def _share(ceiling: dict | None, dtype: str, tflops: float) -> str:
    if not ceiling or not ceiling.get(dtype):
        return ""
    return f" ({tflops / ceiling[dtype]:.1%})"


def print_steps(rows, torch_rows, ceiling, settings) -> None:
    cols = " | ".join(f"b{b}, {c} classes: ms | TFLOP/s (share) | compile s" for b, c in settings)
    print(f"\n| train step | {cols} |\n|---|" + "---|---|---|" * len(settings), flush=True)
    names = []
    for r in rows or []:
        key = (r["method"], r["dtype"], r["compute_dtype"])
        if key not in names:
            names.append(key)
    for method, dtype, compute in names:
        cells = []
        for b, c in settings:
            r = next((r for r in rows if (r["method"], r["dtype"], r["batch"], r["classes"])
                      == (method, dtype, b, c)), None)
            if r is None or "step_s" not in r:
                compiled = f"{r['compile_s']:.1f}" if r and "compile_s" in r else ""
                cells.append(f"{(r or {}).get('error', 'not run')} | | {compiled}")
                continue
            tf = r["flops"] / r["step_s"] / 1e12
            cells.append(f"{r['step_s'] * 1e3:.2f} | {tf:.1f}{_share(ceiling, compute, tf)} | "
                         f"{r['compile_s']:.1f}")
        label = f"ours, {method}, {dtype}" + (f" (= {compute})" if dtype == "auto" else "")
        used = {r.get("attention") for r in rows
                if (r["method"], r["dtype"]) == (method, dtype) and r.get("attention")}
        label += f", attention: {', '.join(sorted(used))}" if used else ""
        print(f"| {label} | " + " | ".join(cells) + " |")
    if isinstance(torch_rows, list):
        for tokens in TORCH_TOKENS:
            cells = []
            for b, c in settings:
                r = next((r for r in torch_rows if (r["tokens"], r["batch"], r["classes"])
                          == (tokens, b, c)), None)
                if r is None or "step_s" not in r:
                    cells.append(f"{(r or {}).get('error', 'not run')} | | -")
                    continue
                tf = r["flops"] / r["step_s"] / 1e12
                cells.append(f"{r['step_s'] * 1e3:.2f} | {tf:.1f}"
                             f"{_share(ceiling, 'bfloat16', tf)} | -")
            print(f"| PyTorch eager MMA, bf16 autocast, {tokens}-token prompts | "
                  + " | ".join(cells) + " |")
    elif isinstance(torch_rows, dict):
        print(f"(PyTorch reference: {torch_rows.get('skipped')})")
    sys.stdout.flush()


def print_compile(rows, arch: str) -> None:
    """AdaRing's and MMA's compile seconds from one process, per setting (the default dtype)."""
    for r in rows or []:
        if r["method"] != "adaring" or r["dtype"] != "auto" or "compile_s" not in r:
            continue
        m = next((x for x in rows if x["method"] == "mma" and x["dtype"] == "auto"
                  and (x["batch"], x["classes"]) == (r["batch"], r["classes"])
                  and "compile_s" in x), None)
        if m:
            runs = lambda x: ("" if len(x.get("compile_runs", [])) < 2 else  # noqa: E731
                              f" (median of {len(x['compile_runs'])}: "
                              f"{min(x['compile_runs']):.1f}-{max(x['compile_runs']):.1f})")
            print(f"compile seconds ({arch}, batch {r['batch']}, {r['classes']} classes, "
                  f"{r['compute_dtype']}, one process): adaring {r['compile_s']:.1f}{runs(r)}, "
                  f"mma {m['compile_s']:.1f}{runs(m)}: {r['compile_s'] / m['compile_s']:.2f}x "
                  "(issue 31 asks <= 1.3x)", flush=True)


def _b2n_run(guard: Guard, name: str, caches: str, s: dict, env_extra: dict) -> dict:
    root = guard.work
    workdir = os.path.join(root, f"run_{name}")
    cmd = [sys.executable, "-m", "adaring_jax.main",
           f"--config=configs/base2novel.py:dataset=folder:{root}/images,checkpoint={root}/ckpt,"
           f"method={s['method']}",
           f"--workdir={workdir}", *s["overrides"]]
    env = _env(ADARING_CACHE_DIR=caches, **env_extra)
    env.pop("ADARING_COMPILATION_CACHE")  # the job's own caches, as a user runs it
    rc, wall = guard.run(name, cmd, env, os.path.join(root, f"{name}.log"))
    out = {"rc": rc, "wall_s": round(wall, 2)}
    path = os.path.join(workdir, "results.json")
    if rc == 0 and os.path.exists(path):
        with open(path) as f:
            r = json.load(f)
        out.update({k: r.get(k) for k in ("prepare_seconds", "first_step_seconds",
                                          "train_seconds", "eval_seconds", "steps")})
        out.update(hm=r["adapted"].get("hm"), zeroshot_hm=r["zeroshot"].get("hm"))
        split = glob.glob(os.path.join(workdir, "split_*.json"))
        if split:
            with open(split[0]) as f:
                out["test_images"] = len(json.load(f)["test"])
    return out


def section_b2n(guard: Guard) -> dict:
    s = _sizes(guard.smoke)
    made = guard.child("make", _env(JAX_PLATFORMS="cpu"))  # the device stays free
    result = {"make": made}
    if not made:
        return result
    print(f"made {made['images']} JPEGs ({s['classes']} classes, {s['size'][0]}x{s['size'][1]}) "
          f"in {made['images_s']:.1f} s and a random {s['arch']} checkpoint with CLIP's "
          f"tokenizer in {made['checkpoint_s']:.1f} s", flush=True)
    caches = os.path.join(guard.work, "caches")
    result["cold"] = _b2n_run(guard, "cold", caches, s, {})
    # Warm: the compiled programs from the cold run; the zero-shot cache off, so it evaluates
    # the same images (zero-shot and adapted) as the cold run did.
    result["warm"] = _b2n_run(guard, "warm", caches, s, {"ADARING_ZEROSHOT_CACHE": "0"})
    return result


def print_b2n(b2n: dict) -> None:
    print("\n| base-to-novel run | wall s | prepare | first step | train | eval | test images "
          "| eval images/s |\n|---|---|---|---|---|---|---|---|")
    for name in ("cold", "warm"):
        r = b2n.get(name)
        if not r or r.get("rc") != 0:
            print(f"| {name} | failed or not run (status {None if not r else r['rc']}) "
                  "| | | | | | |")
            continue
        n = r.get("test_images")
        rate = f"{n / r['eval_seconds']:.0f}" if n and r["eval_seconds"] else "?"
        print(f"| {name} cache | {r['wall_s']:.1f} | {r['prepare_seconds']:.1f} | "
              f"{r['first_step_seconds']:.1f} | {r['train_seconds']:.1f} | "
              f"{r['eval_seconds']:.1f} | {n} | {rate} |")
    cold, warm = b2n.get("cold") or {}, b2n.get("warm") or {}
    if cold.get("rc") == 0 and warm.get("rc") == 0 and warm.get("test_images"):
        rate = warm["test_images"] / warm["eval_seconds"]
        compile_s = cold["eval_seconds"] - warm["eval_seconds"]
        print(f"evaluation apart from its compile (warm): {rate:.0f} images/s; its compile in "
              f"the cold run ~{compile_s:.1f} s; results equal: "
              f"{cold.get('hm') == warm.get('hm')} (HM {cold.get('hm')})")
    sys.stdout.flush()


def parent(args) -> dict:
    s = _sizes(args.smoke)
    work = args.root or tempfile.mkdtemp(prefix="adaring-accelerator-")
    os.makedirs(work, exist_ok=True)
    guard = Guard(args.budget, work, args.smoke)
    sections = args.sections.split(",")
    results = {"smoke": args.smoke, "arch": s["arch"], "settings": s["settings"], "work": work}

    def save():
        if args.json:
            _dump(args.json, results)

    start = time.monotonic()
    ceiling = None
    if "ceiling" in sections or "torch" in sections:
        ceiling = results["ceiling"] = guard.child("ceiling")
        if ceiling:
            print(f"device: {ceiling['device']} x{ceiling['devices']} ({ceiling['backend']}), "
                  f"jax {ceiling['jax']}\n\n| matmul ceiling | TFLOP/s |\n|---|---|")
            for dtype in ("bfloat16", "float32"):
                if dtype in ceiling:
                    print(f"| {dtype} {ceiling['n']}^3 | {ceiling[dtype]:.1f} |", flush=True)
        save()
    if "compile" in sections:
        rows = results["compile"] = guard.child("compile", extra=["--compile_only"])
        print_compile(rows, s["arch"] if args.smoke else "vit_b16")
        save()
    if "steps" in sections:
        results["steps"] = guard.child("steps")
        print_steps(results["steps"], None, ceiling, s["settings"])
        print_compile(results["steps"], s["arch"])
        save()
    if "b2n" in sections:  # before the PyTorch rows: the issue has those already
        results["b2n"] = section_b2n(guard)
        print_b2n(results["b2n"])
        save()
    if "torch" in sections:
        backend = (ceiling or {}).get("backend", "cpu")
        results["torch"] = guard.child("torch", _env(ACCELERATOR_BACKEND=backend,
                                                     JAX_PLATFORMS="cpu"))
        print_steps(results.get("steps"), results["torch"], ceiling, s["settings"])
        save()
    results["seconds"] = round(time.monotonic() - start, 1)
    save()
    print(f"\naccelerator benchmark: {results['seconds']:.0f} s", flush=True)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CPU, tests)")
    p.add_argument("--json", default="", help="write every number to this file")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated, of {', '.join(SECTIONS)}, compile")
    p.add_argument("--budget", type=float, default=440.0,
                   help="seconds for the whole command (sections get what is left)")
    p.add_argument("--root", default="", help="working folder ('' = a new temporary one)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--child_out", default="", help=argparse.SUPPRESS)
    p.add_argument("--compile_only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        from adaring_jax import host
        host.tune_malloc()  # as every command does
        if args.child == "make":
            child_make(args.smoke, args.child_out, args.root)
        elif args.child == "compile":
            child_steps(args.smoke, args.child_out, compile_only=True)
        else:
            CHILDREN[args.child](args.smoke, args.child_out)
        return
    unknown = set(args.sections.split(",")) - {*SECTIONS, "compile"}
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}, compile")
    parent(args)


if __name__ == "__main__":
    main()
