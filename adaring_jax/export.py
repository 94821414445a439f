r"""Export a finished run for PyTorch users: the backbone in Hugging Face format plus its adapters
as plain per-layer tensors.

    python -m adaring_jax.export --workdir=runs/default --out=exported/

OUT (which must not exist yet, or be empty, or with --overwrite hold an earlier export;
never inside a run directory) then holds:
- `config.json`, `model.safetensors`, `preprocessor_config.json` and the tokenizer files:
  the frozen CLIP as `transformers.CLIPModel.from_pretrained(OUT)` loads it;
- `adapters.safetensors`: for each tower ("vision", "text") and adapted block l (0-based, as in
  `encoder.layers[l]`) the materialized branch `{tower}.{l}.{down,shared,up}.{weight,bias}`,
  weights in `torch.nn.Linear` layout (out_features, in_features). AdaRing's rings are
  contracted and its banks merged into one MLP (gates applied), so both methods export the
  same thing;
- `adapter_config.json`: method, alpha, the adapted blocks, the widths, the run it came from.

The adapted block computes `y = layer(x) + alpha * up(relu(shared(relu(down(ln1(x))))))`, where
`ln1` is that block's own `layer_norm1` applied to the block's input x; the README ("Export")
shows how to attach this to `transformers.CLIPModel` with forward hooks.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from absl import app, flags

from adaring_jax import adapters, cli
from adaring_jax import atomic
from adaring_jax.job import outputs, runs
from adaring_jax.errors import UserError
from adaring_jax.models import convert

FAMILIES = ("down", "shared", "up")


class ExportError(UserError, ValueError):
    """An export target that cannot be written."""


def adapter_tensors(params, spec: adapters.Spec) -> dict[str, np.ndarray]:
    """{'{tower}.{block}.{name}': float32 array}: the branch's `{down,shared,up}.{weight,bias}`
    and each weight update's `{site}.delta` (its scale applied), all weights (out, in)."""
    out = {}
    for tower, layer in adapters.layer_adapters(params, spec).items():
        deltas = {site: _dense(u) for site, u in layer.updates.items()}
        for j, block in enumerate(layer.layers):
            for fam, w, b in zip(FAMILIES, layer.kernels, layer.biases):
                out[f"{tower}.{block}.{fam}.weight"] = np.ascontiguousarray(
                    np.asarray(w[j], np.float32).T)
                out[f"{tower}.{block}.{fam}.bias"] = np.asarray(b[j], np.float32)
            for site, d in deltas.items():
                out[f"{tower}.{block}.{site}.delta"] = np.ascontiguousarray(d[j].T)
    return out


def _dense(update) -> np.ndarray:
    """(N, in, out) float32: scale * factors[0] @ factors[1] @ ..."""
    w = np.asarray(update.factors[0], np.float64)
    for f in update.factors[1:]:
        w = np.einsum("nij,njk->nik", w, np.asarray(f, np.float64))
    return (update.scale * w).astype(np.float32)


# Where a site's update goes in transformers.CLIPModel's encoder layer.
SITE_MODULES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                "o": "self_attn.out_proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}


def adapter_config(run: runs.Loaded) -> dict:
    spec = run.spec
    layer = adapters.layer_adapters(run.adapters, spec)["vision"]
    out = {"method": spec.method, "layers": list(spec.layers),
           "towers": {"vision": {"width": spec.widths[0]}, "text": {"width": spec.widths[1]}},
           "trainable_params": adapters.count(spec),
           "run": os.path.abspath(run.record.workdir),
           "results": {k: run.record.results.get(k) for k in ("adapted", "zeroshot")}}
    keys = []
    if layer.kernels:
        out.update(alpha=spec.alpha, bottleneck=int(layer.kernels[0].shape[-1]),
                   formula="layer(x) + alpha * up(relu(shared(relu(down(layer_norm1(x))))))")
        keys.append("{tower}.{layer}.{down|shared|up}.{weight|bias}")
    if layer.updates:
        out["updates"] = {s: SITE_MODULES[s] for s in layer.updates}
        out["update_formula"] = ("add {tower}.{layer}.{site}.delta to the weight of that "
                                 "layer's module updates[site] (no bias change)")
        keys.append("{tower}.{layer}.{site}.delta")
    out["keys"] = "; ".join(keys) + "; weight and delta are (out, in)"
    return out


MARKER = "adapter_config.json"  # what makes a folder an earlier export (--overwrite replaces it)


def check_out(out: str, overwrite: bool = False) -> None:
    """Refuse an --out that export must not write (before any work): inside a run directory,
    a file, a non-empty folder (with --overwrite: one that is not an earlier export)."""
    outputs.check(out, "--out", "folder", overwrite, marker=MARKER)


def export(run: runs.Loaded, out: str, overwrite: bool = False) -> str:
    """Write the export directory (complete or not at all: built beside, then renamed; with
    `overwrite`, an earlier export in its place is removed only once the new one is there)."""
    check_out(out, overwrite)
    parent = os.path.dirname(os.path.abspath(out).rstrip(os.sep))
    tmp = tempfile.mkdtemp(prefix=".export-tmp-", dir=parent)
    old = None
    try:
        convert.save_pretrained(run.model, run.frozen, tmp)
        run.tok.hf.save_pretrained(tmp)
        from safetensors.numpy import save_file
        save_file(adapter_tensors(run.adapters, run.spec), os.path.join(tmp, "adapters.safetensors"),
                  metadata={"format": "pt"})
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(adapter_config(run), f, indent=2)
        atomic.normal_permissions(tmp)  # mkdtemp and safetensors create theirs owner-only
        if os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)  # empty, checked above
        elif os.path.isdir(out):  # an earlier export, and --overwrite (checked above)
            old = tempfile.mkdtemp(prefix=".export-old-", dir=parent)
            os.replace(out, os.path.join(old, "export"))
        os.replace(tmp, out)
    except Exception as e:
        if old is not None and not os.path.exists(out):  # put the earlier export back
            os.replace(os.path.join(old, "export"), out)
        if cli.disk_full(e) is not None:  # safetensors' error names no file: name the export
            raise OSError(errno.ENOSPC, "No space left on device", out) from e
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out


def _define_flags():
    flags.DEFINE_string("workdir", None, "A finished mma or adaring run.", required=True)
    flags.DEFINE_string("out", None, "The directory to create (not inside a run directory).",
                        required=True)
    flags.DEFINE_bool("overwrite", False, "Replace --out if it holds an earlier export.")


def main(argv):
    f = flags.FLAGS

    def body():
        if len(argv) > 1:
            raise ExportError(f"unexpected arguments: {argv[1:]}")
        check_out(f.out, f.overwrite)
        run = runs.load(f.workdir, needs_adapters=True)
        if not adapters.get(run.spec.method).exportable:
            raise ExportError(f"{f.workdir} is a {run.spec.method} run; export writes bottleneck "
                              "branches and weight updates materialized per layer, and cannot "
                              "hold its weights")
        export(run, f.out, f.overwrite)
        print(f"exported the {run.spec.method} run {f.workdir} to {f.out} "
              f"({adapters.count(run.spec):,} adapter parameters in "
              f"{len(run.spec.layers)} blocks per tower)", file=sys.stderr)

    return cli.run(body, cli.EXPORT_REMOVED)


if __name__ == "__main__":
    _define_flags()
    app.run(main, flags_parser=cli.parse_flags)
