"""What the image files of a folder or list are: a content digest per file, read once.

A run's identity covers its images' bytes (`own.Table.identity`), so a folder whose images were
repainted under the same names is another experiment. Hashing a folder reads all of it, so each
file's digest is kept in a per-user cache with the file's size and modification time
(`caches.digests_dir()`, one small JSON file per data folder) and read back while both are
unchanged: a rerun on an unchanged 1.28M-file folder stats the files and reads none.

The cache file carries a digest of its own content and is used only if that matches (a damaged
file is recomputed and replaced, with one warning); it cannot be written, the digests are
still computed (a cache only saves time).
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import json
import os

from absl import logging

from adaring_jax import atomic, caches

DIGEST_CHARS = 32  # hex characters kept of a file's SHA-256 (128 bits: a change detector)
UNREADABLE = "unreadable"  # the digest of a file that cannot be read (the probe reports it)
_THREADS = 8  # files hashed at once (I/O bound; hashlib releases the GIL)


def file_digest(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:DIGEST_CHARS]
    except OSError:
        return UNREADABLE


def _cache_path(root: str) -> str | None:
    where = caches.digests_dir()
    if where is None:
        return None
    name = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(where, name[:32] + ".json")


def _content_check(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def _read_cache(path: str | None, root: str) -> dict:
    """{relative path: [size, mtime_ns, digest]} of the cache file, {} when there is none; a
    damaged one is reported and ignored."""
    if path is None or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            value = json.load(f)
        files = value["files"]
        if value["check"] != _content_check(files) or not isinstance(files, dict):
            raise ValueError("its content does not match the digest written with it")
        return files if value.get("root") == os.path.realpath(root) else {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        logging.warning("file digest cache %s is damaged (%s); recomputing it", path, e)
        return {}


def _write_cache(path: str | None, root: str, files: dict) -> None:
    if path is None:
        return
    atomic.write_cache_entry(path, json.dumps({"root": os.path.realpath(root), "files": files,
                                               "check": _content_check(files)}).encode())


def digests(root: str, paths) -> dict[str, str]:
    """{path: content digest} of `paths` (relative to `root`), from the cache where a file's
    size and modification time are the cached ones, else read (and the cache updated)."""
    path = _cache_path(root)
    cached = _read_cache(path, root)
    out, stats, todo = {}, {}, []
    for rel in sorted(set(paths)):
        try:
            st = os.stat(os.path.join(root, rel))
            stats[rel] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[rel] = UNREADABLE
            continue
        hit = cached.get(rel)
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == stats[rel]:
            out[rel] = hit[2]
        else:
            todo.append(rel)
    if todo:
        with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
            for rel, digest in zip(todo, pool.map(
                    lambda r: file_digest(os.path.join(root, r)), todo)):
                out[rel] = digest
    fresh = {rel: [*stats[rel], out[rel]] for rel in stats if out[rel] != UNREADABLE}
    if todo:
        keep = {rel: v for rel, v in cached.items() if rel not in fresh}  # other lists' files
        _write_cache(path, root, {**keep, **fresh})
    return out


def _class_folder(path: str, kind: str) -> str | None:
    """The class folder of a folder dataset's image path (`cls/...` or `split/cls/...`)."""
    if kind != "folder":
        return None
    parts = path.split("/")
    return parts[1] if parts[0] in ("train", "val", "test") and len(parts) > 2 else parts[0]


def describe_changes(old: dict, new: dict, kind: str = "folder") -> str:
    """What changed between two `own.Table.images` records ({path: [class, digest]}), in
    words: "3 images changed, 1 added, class folder 'x' renamed to 'y' (the run had 120
    images in 4 classes; there are now 121 in 4)"."""
    old = {p.replace(os.sep, "/"): v for p, v in old.items()}
    new = {p.replace(os.sep, "/"): v for p, v in new.items()}
    old_classes = {c for c, _ in old.values()}
    new_classes = {c for c, _ in new.values()}
    renamed = {}  # old class -> new class: most of its images are the new class's
    for gone in sorted(old_classes - new_classes):
        mine = collections.Counter(d for c, d in old.values() if c == gone)
        best, overlap = None, 0
        for came in sorted(new_classes - old_classes - set(renamed.values())):
            theirs = collections.Counter(d for c, d in new.values() if c == came)
            shared = sum((mine & theirs).values())
            if shared > overlap:
                best, overlap = came, shared
        if best is not None and 2 * overlap >= sum(mine.values()):
            renamed[gone] = best
    words = []
    moved = {}  # an old path under a renamed class folder -> its new path
    for gone, came in renamed.items():
        folders_old = {_class_folder(p, kind) for p, (c, _) in old.items() if c == gone}
        folders_new = {_class_folder(p, kind) for p, (c, _) in new.items() if c == came}
        if kind == "folder" and len(folders_old) == 1 and len(folders_new) == 1:
            a, b = folders_old.pop(), folders_new.pop()
            words.append(f"class folder {a!r} renamed to {b!r}")
            for p, (c, _) in old.items():
                if c == gone:
                    parts = p.split("/")
                    parts[parts.index(a)] = b
                    moved[p] = "/".join(parts)
        else:
            words.append(f"class {gone!r} renamed to {came!r}")
    now = {moved.get(p, p): [renamed.get(c, c), d] for p, (c, d) in old.items()}
    changed = sum(1 for p in now.keys() & new.keys() if now[p][1] != new[p][1])
    relabelled = sum(1 for p in now.keys() & new.keys() if now[p][0] != new[p][0])
    added, removed = len(new.keys() - now.keys()), len(now.keys() - new.keys())
    counts = [f"{changed} image{'s' if changed != 1 else ''} changed" if changed else "",
              f"{added} added" if added else "", f"{removed} removed" if removed else "",
              f"{relabelled} moved to another class" if relabelled else ""]
    words = [w for w in counts if w] + words
    summary = ", ".join(words) or "the same images, split differently"
    return (f"{summary} (the run had {len(old)} images in {len(old_classes)} classes; there are "
            f"now {len(new)} in {len(new_classes)})")
