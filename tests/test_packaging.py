"""Packaging hygiene: one dependency list, pinned versions, clean notebooks, lint, nothing read from the shared folder."""

import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _environment_pip() -> list[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    return [line.strip()[2:] for line in lines[start + 1:] if line.strip().startswith("- ")]


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = _pyproject()
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = {_name(r) for r in _environment_pip() if not r.startswith("-e")}
    assert env == declared


def test_constraints_pin_every_dependency_and_cpu_torch():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = _pyproject()
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        assert _name(req) in pins, f"{req} has no pin in constraints.txt"
    assert pins["torch"] == "2.13.0"
    assert "torchvision" not in pins


def test_nbformat_imports_without_the_slow_iri_checker():
    """Every papermill run, nbstripout filter call and JupyterLab start imports nbformat, hence jsonschema's
    format checkers; with rfc3987-syntax installed that import alone took 2.8 s here (constraints.txt)."""
    probe = "import sys, nbformat; print(sorted(m for m in sys.modules if m.split('.')[0] in ('rfc3987_syntax', 'lark')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_committed_notebooks_carry_no_outputs():
    """What git holds is clean (a notebook open in JupyterLab may autosave outputs into the working
    copy: the nbstripout filter that `make install` sets up strips them on `git add`)."""
    notebooks = sorted((ROOT / "notebooks").rglob("*.ipynb"))
    assert notebooks, "no notebooks found"
    for path in notebooks:
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{path.relative_to(ROOT).as_posix()}"],
                               capture_output=True, text=True)
        nb = json.loads(shown.stdout if shown.returncode == 0 else path.read_text())  # new, uncommitted: the file
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert cell.get("outputs") == [] and cell.get("execution_count") is None, path.name


def test_ruff_is_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "cldst", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


NEEDLE = "../" + "shared"  # spelled in two pieces so this file does not match itself


def test_nothing_reads_the_shared_folder():
    offenders = []
    for folder in ("cldst", "tests", "notebooks", "benchmarks"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".ipynb") and NEEDLE in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
