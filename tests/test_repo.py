"""The repository's front door: CI runs exactly the README's install and test commands."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line for b in blocks for line in b.strip().splitlines()]


def test_ci_runs_the_readme_install_and_test_commands():
    commands = _readme_commands()
    install = next(c for c in commands if "pip install" in c)
    test = next(c for c in commands if "pytest" in c)
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    assert install in ci and test in ci
    assert ci.index(install) < ci.index(test)


def test_requirements_are_pinned_in_constraints():
    pins = {l.split("==")[0].lower().replace("_", "-") for l in
            open(os.path.join(ROOT, "constraints.txt")).read().split() if "==" in l}
    for line in open(os.path.join(ROOT, "requirements.txt")):
        name = re.split(r"[<>=\[ ]", line.strip())[0].lower().replace("_", "-")
        if name and not name.startswith("#"):
            assert name in pins, f"{name} has no pinned version in constraints.txt"


def _imports(path: str, package: str) -> set[str]:
    """The adaring_jax modules a file imports (any position: module level or in functions)."""
    import ast
    tree = ast.parse(open(path).read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(package)}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def test_the_package_import_graph_has_no_circle():
    package = "adaring_jax"
    modules = {}
    for base, _, files in os.walk(os.path.join(ROOT, package)):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(base, f), ROOT)[:-3].replace(os.sep, ".")
                modules[rel.removesuffix(".__init__")] = os.path.join(base, f)
    graph = {m: {i for i in _imports(p, package) if i in modules and i != m}
             for m, p in modules.items()}
    for m in graph:  # a package's __init__ is not a dependency of its own submodules' cycle
        graph[m] = {d for d in graph[m] if not m.startswith(d + ".")}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in graph[m]:
            if state.get(d) == "open":
                raise AssertionError("import circle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])


# The package's layers, lowest first: a module imports only from lower layers or from its own
# group (subpackage or top-level module). The commands sit on top, each its own group.
LAYERS = (("errors", "caches", "host", "atomic"), ("models",), ("adapters", "data"), ("config_args",),
          ("job",), ("cli",), ("main", "predict", "export", "compress", "zeroshot", "params"))


def test_no_module_imports_one_above_it():
    package = "adaring_jax"
    rank = {g: i for i, groups in enumerate(LAYERS) for g in groups}
    wrong = []
    for base, _, files in os.walk(os.path.join(ROOT, package)):
        for f in files:
            if not f.endswith(".py") or base.endswith("assets"):
                continue
            path = os.path.join(base, f)
            rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__")
            if rel == package:
                continue
            group = rel.split(".")[1]
            assert group in rank, f"{rel}: place its group {group!r} in LAYERS"
            for target in _imports(path, package):
                parts = target.split(".")
                if len(parts) < 2 or parts[1] == group:
                    continue
                if parts[1] in rank and rank[parts[1]] >= rank[group]:
                    wrong.append(f"{rel} imports {target}")
    assert not wrong, wrong


# Design references not yet moved to docs/method.md: these modules are being refactored
# elsewhere (issue 33 hand-off); delete an entry once its docstring points at docs/method.md.


def _code_files():
    for top in ("adaring_jax", "configs", "benchmarks", "experiments", "launch", "tests"):
        for base, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".py", ".sh", ".ipynb")):
                    yield os.path.relpath(os.path.join(base, f), ROOT)


def test_code_names_only_documents_that_are_in_the_repository():
    """A docstring or comment that cites a document (README.md, DESIGN.md, docs/*.md,
    experiments/*.md or .png) cites one a clone has."""
    missing = []
    for rel in _code_files():
        if rel == os.path.join("tests", "test_repo.py"):  # this test names the patterns
            continue
        text = open(os.path.join(ROOT, rel)).read()
        for name in set(re.findall(r"\b(?:(?:docs|experiments)/[\w-]+\.(?:md|png)|README\.md"
                                   r"|DESIGN\.md)", text)):
            if not os.path.exists(os.path.join(ROOT, name)):
                missing.append(f"{rel}: {name}")
    assert not missing, missing


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_readme_and_docs_links_resolve():
    """Every relative link of the README and docs/ names a file of the repository, and every
    #anchor a heading of that file."""
    pages = ["README.md"] + [os.path.join("docs", f)
                             for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")]
    broken = []
    for page in pages:
        text = open(os.path.join(ROOT, page)).read()
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            path, _, anchor = target.partition("#")
            file = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
                else os.path.join(ROOT, page)
            if not os.path.exists(file):
                broken.append(f"{page}: {target}")
            elif anchor:
                headings = re.findall(r"^#+ (.*)$", open(file).read(), re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken


def test_readme_is_a_start_page():
    assert len(open(os.path.join(ROOT, "README.md")).read().splitlines()) <= 250
