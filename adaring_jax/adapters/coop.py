"""`coop`: CoOp's learned context (Zhou et al., IJCV 2022; KaiyangZhou/CoOp at ff61507).

The prompt of class c is `[SOS] v_1 ... v_n <name of c> . [EOS]`: n context vectors shared by
all classes replace the token embeddings after the start token, and only they train (the
towers are frozen and unchanged). As CoOp's `trainers/coop.py` L72-80 with `CTX_INIT` set,
they start as the frozen token embeddings of the context words ("a photo of a": n = 4), and
the prompts are `ctx_init + " " + name + "."` (L100), so the adapted model starts as the
zero-shot CLIP with that prompt. ViT-B/16: 4 x 512 = 2,048 parameters (the base-to-novel
setting of CoOp's and CoCoOp's tables).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from adaring_jax.adapters import base
from adaring_jax.errors import ConfigError
from adaring_jax.models import clip


@dataclasses.dataclass(frozen=True)
class Spec(base.Spec):
    n_ctx: int = 4
    ctx_init: str = "a photo of a"

    def first_block(self, tower: str) -> int | None:
        return 0 if tower == "text" else None  # the text tower's input; vision untouched


def config_block() -> dict:
    return {
        # The context words the vectors start from (CoOp's CTX_INIT); one vector per word,
        # and the prompts begin with them ("a photo of a {}.": data.prompt="mma"). "": CoOp's
        # random init (L81-88): n_ctx vectors drawn N(0, 0.02), prompts "X X ... X <name>.".
        "ctx_init": "a photo of a",
        "n_ctx": 0,  # the number of vectors with ctx_init="" (CoOp's N_CTX); else 0
        "init_from": "",  # a finished coop run of the same spec to continue
    }


def _random(block) -> bool:
    return not block.ctx_init.split()


def template(block) -> str | None:
    """The random context's prompts, CoOp's `prompt_prefix + " " + name + "."` (L87, L100)."""
    return " ".join(["X"] * block.n_ctx) + " {}." if _random(block) else None


def check(config) -> None:
    words = config.adapter.ctx_init.split()
    base.number("adapter.n_ctx", config.adapter.n_ctx, 0, integer=True)
    if not words:
        if config.adapter.n_ctx < 1:
            raise ConfigError("config.adapter.ctx_init is empty (CoOp's random init): set "
                              "config.adapter.n_ctx >= 1, or give the context words, e.g. "
                              "'a photo of a'")
        return
    if config.adapter.n_ctx not in (0, len(words)):
        raise ConfigError(f"config.adapter.n_ctx={config.adapter.n_ctx} with the "
                          f"{len(words)} words of ctx_init={config.adapter.ctx_init!r}: one "
                          "vector per word (n_ctx=0), or ctx_init='' for a random context")
    own = config.data.dataset.startswith(("folder:", "list:", "tfds:"))
    prompt = config.data.template if own else (
        "a photo of a {}." if config.data.prompt == "mma" else None)
    if prompt is None or not prompt.startswith(" ".join(words) + " {}"):
        raise ConfigError(f"coop learns the context {config.adapter.ctx_init!r} of prompts "
                          f"'{' '.join(words)} <class>.'; the adapted prompt here is "
                          f"{prompt or 'the dataset CoOp template (data.prompt=coop)'!r}: use "
                          "data.prompt=mma (or, on your own data, a data.template that starts "
                          "with the context words)")


def recipe(config, name: str, arg) -> None:
    """CoOp's own optimization on real checkpoints (`configs/trainers/CoOp/
    vit_b16_ep50_ctxv1.yaml`): SGD lr 0.002, batch 32, 50 epochs, Dassl's per-epoch cosine
    after one epoch at the constant warmup rate 1e-5."""
    del arg
    if name == "mma":
        o = config.optim
        o.name, o.lr, o.batch_size, o.epochs, o.schedule = "sgd", 0.002, 32, 50, "epoch_cosine"
        o.warmup_epochs, o.warmup_lr = 1, 1e-5


def make_spec(block, model_config) -> Spec:
    n_ctx = block.n_ctx if _random(block) else len(block.ctx_init.split())
    room = model_config.text.context_length - 3  # start, end and one token of the name
    if n_ctx > room:
        raise ConfigError(f"{n_ctx} context vectors leave no room for the class name in the "
                          f"text tower's {model_config.text.context_length}-token prompts: "
                          f"at most {room} (config.adapter.n_ctx / ctx_init)")
    return Spec("coop", base.widths(model_config), (), n_ctx=n_ctx,
                ctx_init=" ".join(block.ctx_init.split()))


def init(spec: Spec, seed: int) -> base.Params:
    """A random context: N(0, 0.02) from numpy (CoOp L86); from words: the shapes only, the
    values come from the backbone (`backbone_init`)."""
    shape = (spec.n_ctx, spec.widths[1])
    if spec.ctx_init:
        return {"context": jnp.zeros(shape, jnp.float32)}
    rng = np.random.default_rng([seed, 4])  # 4: apart from the other methods' init streams
    return {"context": jnp.asarray(0.02 * rng.standard_normal(shape), jnp.float32)}


def backbone_init(params, spec: Spec, model, frozen, tok, block) -> base.Params:
    """The frozen token embeddings of the context words (CoOp L76-79)."""
    del model, block
    if not spec.ctx_init:
        return params  # the random context of `init`
    ids = np.asarray(tok([spec.ctx_init]))[0]
    end = int(np.argmax(ids == tok.eos_token_id))
    if end - 1 != spec.n_ctx:
        raise ConfigError(f"config.adapter.ctx_init={spec.ctx_init!r} is {end - 1} tokens for "
                          f"{spec.n_ctx} words: give words that are one token each")
    table = np.asarray(frozen["text_model"]["embeddings"]["token_embedding"]["embedding"])
    return {"context": jnp.asarray(table[ids[1:end]], jnp.float32)}


def layer_adapters(params: base.Params, spec: Spec) -> dict:
    return {"vision": None, "text": clip.LayerAdapters(context=params["context"])}


METHOD = base.register(base.Method(
    name="coop", summary="CoOp: learned context vectors in the class prompts (4 by default)",
    config_block=config_block, check=check, make_spec=make_spec, init=init,
    layer_adapters=layer_adapters, labels=lambda spec: {"context": base.DENSE},
    backbone_init=backbone_init, recipe=recipe, exportable=False, template=template,
    warm_start=lambda name, params, source, spec: params if (name, source) == ("coop", spec)
    else None))
