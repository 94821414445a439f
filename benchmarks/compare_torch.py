r"""Our train step against a PyTorch MMA reference, timed alternately in one process, with a
FLOP count, the machine's matmul ceiling and the achieved share of it (MFU).

    pip install -r benchmarks/requirements-torch.txt   # torch: this benchmark only
    python -m benchmarks.compare_torch --arch=vit_b16 --batch=8 --classes=100 --repeats=3

The reference is what MMA's code runs (ZjjConan/Multi-Modal-Adapter `trainers/mmadapter.py`):
Hugging Face `transformers.CLIPModel` (random weights of the same architecture) in eager mode,
MMA adapters (Down d->32, Shared 32->32 shared by the two towers, Up 32->d, ReLU, scale 0.001,
reading each block's first LayerNorm output, added to the block's output) in blocks 5-12 of
both towers, every class prompt through the whole text tower at 77 tokens each step,
cross-entropy on scaled cosine logits, SGD with momentum over the adapters only. A second
reference cuts the prompts to 16 tokens. Ours: `benchmarks.train_step.prepare` for `adaring`
(ranks 2+4+8, generalization-aware loss) and `mma`, cut + cached prompts, each also with
`model.fast_step` (layers unrolled, attention heads-major: other rounding, same FLOPs). Also
printed: our steps' matmul FLOPs (counted from the architecture: `analytic_flops`), the
ceiling of a large f32 matmul here, MFU, and the cost of materializing AdaRing's rings
(jitted alone) as a share of its step.
"""

from __future__ import annotations

import os
import statistics
import time

# torch's OpenMP threads spin after each op by default, taking the cores from XLA's threads
# when the two alternate in one process; passive waiting makes the alternation fair.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import jax.numpy as jnp
from absl import app, flags

from adaring_jax import adapters, host
from adaring_jax.models import clip
from benchmarks import step_time, train_step
from configs import fewshot

_ARCH = flags.DEFINE_string("arch", "vit_b16", "CLIP preset (random weights)")
# --batch, --classes and --repeats are step_time.py's flags.
_BATCH, _CLASSES, _REPEATS = step_time._BATCH, step_time._CLASSES, step_time._REPEATS
_START, _END = 5, 12  # MMA's adapted blocks (1-based)


# ---------------------------------------------------------------------------------------------
# The PyTorch reference


def _torch_reference(arch: str, batch: int, classes: int, tokens: int, device: str = "cpu",
                     bf16: bool = False):
    """A closure running one MMA training step in PyTorch eager mode on `device` (with bf16
    autocast when `bf16`, as MMA trains in mixed precision), and the number of trainable
    parameters."""
    import torch
    from torch import nn
    from transformers import CLIPConfig, CLIPModel

    c = clip.preset(arch).config
    hf = CLIPConfig(
        text_config=dict(hidden_size=c.text.width, intermediate_size=c.text.mlp_dim,
                         num_hidden_layers=c.text.layers, num_attention_heads=c.text.heads,
                         max_position_embeddings=c.text.context_length,
                         vocab_size=c.text.vocab_size),
        vision_config=dict(hidden_size=c.vision.width, intermediate_size=c.vision.mlp_dim,
                           num_hidden_layers=c.vision.layers, num_attention_heads=c.vision.heads,
                           image_size=c.vision.image_size, patch_size=c.vision.patch_size),
        projection_dim=c.projection_dim)
    torch.manual_seed(0)
    model = CLIPModel(hf).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    hidden, scale = 32, 0.001

    class Adapted(nn.Module):
        """block(x) + scale * Up(relu(Shared(relu(Down(LN1(x))))))."""

        def __init__(self, block, width, shared):
            super().__init__()
            self.block, self.shared = block, shared
            self.down, self.up = nn.Linear(width, hidden), nn.Linear(hidden, width)

        def forward(self, x, *args, **kwargs):
            u = self.block.layer_norm1(x)
            branch = scale * self.up(torch.relu(self.shared(torch.relu(self.down(u)))))
            out = self.block(x, *args, **kwargs)
            if isinstance(out, tuple):  # transformers versions that return (hidden, ...)
                return (out[0] + branch,) + tuple(out[1:])
            return out + branch

    trainable = []
    for i in range(_START - 1, _END):
        shared = nn.Linear(hidden, hidden)
        for tower in (model.vision_model, model.text_model):
            layers = tower.encoder.layers
            layers[i] = Adapted(layers[i], tower.config.hidden_size, shared)
            trainable += [*layers[i].down.parameters(), *layers[i].up.parameters()]
        trainable += list(shared.parameters())
    model.to(device)
    opt = torch.optim.SGD(trainable, lr=0.0015, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 3, c.vision.image_size, c.vision.image_size, generator=g)
    labels = torch.randint(0, classes, (batch,), generator=g)
    ids = torch.randint(1, c.text.vocab_size - 2, (classes, tokens), generator=g)
    ids[:, 0] = c.text.vocab_size - 2
    ids[:, 10:] = c.text.vocab_size - 1  # end-of-text at 10, padding after (as CLIP pads)
    ids[:, 9] = c.text.vocab_size - 1
    pixels, labels, ids = pixels.to(device), labels.to(device), ids.to(device)
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        with autocast:
            img = model.get_image_features(pixel_values=pixels)
            txt = model.get_text_features(input_ids=ids)
            img = getattr(img, "pooler_output", img).float()
            txt = getattr(txt, "pooler_output", txt).float()
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * img @ txt.t()
        loss = nn.functional.cross_entropy(logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    return step, sum(p.numel() for p in set(trainable))


def _timed_torch(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# Ceiling, FLOPs, rings


def matmul_ceiling(n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a jitted float32 n x n x n matmul on this machine (median)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n ** 3 / statistics.median(times)


def layer_flops(tokens: int, width: int, mlp: int) -> float:
    """Forward matmul FLOPs of one transformer block on one sequence: q/k/v/out projections,
    attention scores and weighted sum, the MLP (2 FLOPs per multiply-add)."""
    return 2 * tokens * (4 * width * width + 2 * width * mlp) + 4 * tokens * tokens * width


def analytic_flops(arch: str, batch: int, classes: int, tokens: int, first: int,
                   text_cached: bool, reference_pass: bool) -> float:
    """Matmul FLOPs of one adapter training step. Frozen weights need no weight gradients, so
    the backward of a block costs one forward (activation gradients), and only blocks from the
    first adapted one (0-based `first`) up are differentiated; adapters are negligible."""
    c = clip.preset(arch).config
    v, t = c.vision, c.text
    patches = (v.image_size // v.patch_size) ** 2 + 1
    img = layer_flops(patches, v.width, v.mlp_dim) * batch
    txt = layer_flops(tokens, t.width, t.mlp_dim) * classes
    above = v.layers - first
    vision = img * (v.layers + above + (above if reference_pass else 0))
    text = txt * ((0 if text_cached else first) + 2 * (t.layers - first))
    return vision + text


def ring_materialization_seconds(config, repeats: int = 20) -> float:
    """Median time of producing every adapted layer's weights from AdaRing's cores, alone."""
    spec = adapters.spec_from_config(config, clip.preset(config.model.arch).config)
    params = adapters.init(spec, 0)
    f = jax.jit(lambda p: adapters.layer_adapters(p, spec))
    jax.block_until_ready(f(params))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(params))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv):
    del argv
    host.tune_malloc()  # as every command does; it applies to torch's buffers too
    arch, batch, classes = _ARCH.value, _BATCH.value, _CLASSES.value
    ours = {}
    for m in ("adaring", "mma"):
        for fast in (False, True):
            c = fewshot.get_config(f"arch={arch},method={m}")
            c.unlock()
            c.model.fast_step = fast
            ours[m + ", fast_step" * fast] = train_step.prepare(c, batch, classes, 10,
                                                                cached=True)
    refs = {f"PyTorch MMA ({t} tokens)": _torch_reference(arch, batch, classes, t)
            for t in (77, 16)}
    for step, _ in refs.values():  # warm-up
        step(), step()
    for p in ours.values():
        train_step.run_once(p), train_step.run_once(p)
    times = {name: [] for name in [*refs, *ours]}
    for _ in range(_REPEATS.value):
        for name, (step, _) in refs.items():
            times[name].append(_timed_torch(step))
        for name, p in ours.items():
            times[name].append(train_step.run_once(p))
    med = {k: statistics.median(v) for k, v in times.items()}
    ceiling = matmul_ceiling()
    rings = ring_materialization_seconds(fewshot.get_config(f"arch={arch}"))
    ref77 = med["PyTorch MMA (77 tokens)"]
    print(f"device: {jax.devices()[0].device_kind}, {arch}, batch {batch}, {classes} classes, "
          f"median of {_REPEATS.value} alternating rounds; f32 matmul ceiling "
          f"{ceiling / 1e9:.0f} GFLOP/s")
    first = _START - 1
    flops = {"PyTorch MMA (77 tokens)": analytic_flops(arch, batch, classes, 77, first, False,
                                                       False),
             "PyTorch MMA (16 tokens)": analytic_flops(arch, batch, classes, 16, first, False,
                                                       False),
             "adaring": analytic_flops(arch, batch, classes, ours["adaring"]["prompt_tokens"],
                                       first, True, True),
             "mma": analytic_flops(arch, batch, classes, ours["mma"]["prompt_tokens"], first,
                                   True, False)}
    flops.update({f"{m}, fast_step": flops[m] for m in ("adaring", "mma")})  # the same math
    print("| step | median s | reference (77 tok) / step | GFLOP (analytic) | MFU |")
    print("|---|---|---|---|---|")
    for name, t in med.items():
        label = f"ours, `{name}` (cut + cached prompts)" if name in ours else name
        print(f"| {label} | {t:.2f} | {ref77 / t:.2f}x | {flops[name] / 1e9:.0f} | "
              f"{flops[name] / t / ceiling:.0%} |")
    print(f"AdaRing / MMA step: {med['adaring'] / med['mma']:.3f}; ring materialization "
          f"{rings * 1000:.2f} ms = {rings / med['adaring']:.2%} of the AdaRing step")


if __name__ == "__main__":
    app.run(main)
