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
