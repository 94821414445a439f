"""Optimization of the adapter pytree: the learning-rate schedule, the optimizer with the
method's learning-rate groups, and the jitted train step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from adaring_jax import adapters
from adaring_jax.job import objective, sharding


def make_schedule(o, total_steps: int, steps_per_epoch: int):
    """The learning rate per step. "epoch_cosine" is Dassl's: CosineAnnealingLR(T_max=epochs)
    stepped once per epoch (`dassl/optim/lr_scheduler.py` L128-131; MMA steps it after an
    epoch's last batch), so epoch e trains at lr * (1 + cos(pi * e / epochs)) / 2; with
    `warmup_epochs` W (CoOp: 1), epochs below W train at `warmup_lr` and epoch e >= W at
    lr * (1 + cos(pi * (e - W) / epochs)) / 2."""
    total = max(total_steps, 1)
    warmup = min(o.warmup_steps, max(total_steps - 1, 0))
    if o.schedule == "epoch_cosine":
        per_epoch = max(steps_per_epoch, 1)
        epochs = max(math.ceil(total / per_epoch), 1)

        warm_epochs, warm_lr = o.get("warmup_epochs", 0), o.get("warmup_lr", 0.0)

        def cosine(step):
            epoch = jnp.minimum(step // per_epoch, epochs - 1)
            if not warm_epochs:
                return o.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * epoch / epochs))
            # Dassl's ConstantWarmupScheduler (`dassl/optim/lr_scheduler.py`): the first
            # epochs at warmup_lr, then the cosine from its start (T_max stays `epochs`).
            after = o.lr * 0.5 * (1.0 + jnp.cos(jnp.pi * (epoch - warm_epochs) / epochs))
            return jnp.where(epoch < warm_epochs, warm_lr, after)
    else:
        cosine = optax.cosine_decay_schedule(o.lr, total, alpha=o.get("min_lr", 0.0) / o.lr)
    if not warmup:
        return cosine
    ramp = optax.linear_schedule(0.0, o.lr, warmup)
    return optax.join_schedules([ramp, lambda s: cosine(s + warmup)], [warmup]) \
        if o.schedule == "epoch_cosine" else \
        optax.warmup_cosine_decay_schedule(0.0, o.lr, warmup, total,
                                           end_value=o.get("min_lr", 0.0))


def scale_by_label(labels, multipliers: dict) -> optax.GradientTransformation:
    """Multiply the updates of each leaf by `multipliers[its label]` (1 for labels not
    given); `labels` is a pytree like the params (`adapters.labels`). Stateless."""
    factors = jax.tree.map(lambda label: float(multipliers.get(label, 1.0)), labels)

    def update(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, f: u * f, updates, factors), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(config, spec, total_steps: int, steps_per_epoch: int = 0):
    """(optimizer, schedule) of `config.optim`, with the method's learning-rate multipliers
    per parameter label (`Method.lr_multipliers`; only when one is not 1, so the optimizer
    state keeps its usual structure otherwise)."""
    schedule = make_schedule(config.optim, total_steps, steps_per_epoch)
    return optimizer_of(config, spec)(schedule), schedule


def optimizer_of(config, spec):
    """schedule -> the optimizer of `config.optim` at that learning-rate schedule (with the
    method's multipliers, as `make_optimizer`)."""
    return lambda schedule: _optimizer(config, spec, schedule)


def _optimizer(config, spec, schedule):
    o = config.optim
    if o.name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(o.weight_decay),
                          optax.sgd(schedule, momentum=o.momentum))
    else:
        opt = optax.adamw(schedule, weight_decay=o.weight_decay)
    multipliers = adapters.get(spec.method).lr_multipliers(config.adapter)
    if any(m != 1.0 for m in multipliers.values()):
        opt = optax.chain(opt, scale_by_label(adapters.labels(spec), multipliers))
    return opt


def make_train_step(model, spec, weights, opt, schedule, mesh, seed: int = 0,
                    opt_of=None):
    """jitted (state, frozen, batch, prompts, text_ref) -> (state, metrics), differentiating
    the adapter pytree of `state` only (the frozen arrays are arguments, not constants). The
    step's randomness (an adapter's dropout) is a pure function of (seed, step), so a resumed
    run draws what an uninterrupted one does.

    With `opt_of` (`optimizer_of`), the step takes a sixth argument, {"lr": the learning rate
    of its step, "seed": the seed} (`step_arguments` makes it), and builds the optimizer on
    that rate: neither the run's length nor its seed is then a constant of the program, so
    runs of other lengths and seeds share it (class buckets, `job/buckets.py`); the optimizer
    state and the arithmetic are the same."""
    repl = sharding.replicated(mesh)

    def step(state, frozen, batch, prompts, text_ref, given=None):
        o, sched, key = opt, schedule, seed
        if given is not None:
            o = opt_of(lambda count: given["lr"])
            sched, key = (lambda count: given["lr"]), given["seed"]
        rng = jax.random.fold_in(jax.random.key(key), state["step"])
        (loss, m), grads = jax.value_and_grad(objective.loss_fn, has_aux=True)(
            state["adapters"], frozen, model, spec, weights, batch["image"], batch["label"],
            prompts, text_ref, batch["mask"], rng)
        updates, opt_state = o.update(grads, state["opt_state"], state["adapters"])
        new = {"adapters": optax.apply_updates(state["adapters"], updates),
               "opt_state": opt_state, "step": state["step"] + 1}
        m["lr"] = sched(state["step"])
        m["grad_norm"] = optax.global_norm(grads)
        return new, m

    return jax.jit(step, out_shardings=(repl, repl), donate_argnums=0)


def step_arguments(schedule, seed: int, mesh):
    """step -> the sixth argument of a `make_train_step(..., opt_of=...)` step at that step:
    the learning rate of `schedule` (computed by a program of its own) and the seed."""
    repl = sharding.replicated(mesh)
    lr = jax.jit(schedule, out_shardings=repl)
    seed = jax.device_put(jnp.asarray(seed, jnp.int32), repl)
    return lambda step: {"lr": lr(step), "seed": seed}
