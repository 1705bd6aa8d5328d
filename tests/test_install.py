"""The install is complete and honest: every import our code makes at module level is a declared
dependency, the suite runs in an isolated venv with relift installed from this checkout, and no
CPU code path imports a GPU-only extra. A missing install step fails here, not on a user's machine."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("relift", "workers", "trainer")
GPU_ONLY = {"vllm", "flash_attn", "megatron", "apex", "deepspeed"}
OPTIONAL = GPU_ONLY | {"wandb", "tensorboard", "tensorboardX"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {_norm(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    extras = {name: {_norm(re.split(r"[\s\[<>=!~;]", d, maxsplit=1)[0]) for d in deps}
              for name, deps in project["optional-dependencies"].items()}
    return core, extras


def _module_level_imports(path: Path) -> set[str]:
    """Top-level names imported outside functions (what a plain `import` of the module needs)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(a.name.split(".")[0] for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names.add(child.module.split(".")[0])
            visit(child)

    visit(tree)
    return names


def _source_files() -> list[Path]:
    return [p for pkg in PACKAGES if (REPO / pkg).is_dir() for p in sorted((REPO / pkg).rglob("*.py"))]


def test_every_module_level_import_is_a_declared_dependency():
    core, _ = _declared()
    dists_of = md.packages_distributions()
    own = set(PACKAGES)
    stdlib = set(sys.stdlib_module_names)
    missing = []
    for path in _source_files():
        for name in _module_level_imports(path):
            if name in own or name in stdlib or name == "__future__":
                continue
            if name in OPTIONAL:
                missing.append(f"{path.relative_to(REPO)}: optional extra {name!r} imported at module level")
                continue
            dists = {_norm(d) for d in dists_of.get(name, [])}
            if not dists:
                missing.append(f"{path.relative_to(REPO)}: {name!r} is not installed at all")
            elif not dists & core:
                missing.append(f"{path.relative_to(REPO)}: {name!r} comes from {sorted(dists)}, "
                               "which pyproject.toml does not declare")
    assert not missing, "undeclared imports:\n" + "\n".join(missing)


def test_gpu_extras_are_declared_as_extras():
    _, extras = _declared()
    assert {"vllm", "flash-attn", "megatron", "wandb", "tensorboard", "test"} <= set(extras)


def test_suite_runs_in_an_isolated_venv_with_this_checkout_installed():
    assert sys.prefix != sys.base_prefix, "tests must run inside the project's virtual environment"
    cfg = Path(sys.prefix, "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg, "the venv must not see system site-packages"
    dist = md.distribution("relift")
    assert dist.version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    import relift
    assert Path(relift.__file__).resolve().is_relative_to(REPO), "relift must be imported from this checkout"


def test_installed_core_versions_match_the_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wrong = []
    for spec in project["dependencies"]:
        m = re.match(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", spec)
        if not m:
            continue
        installed = md.version(m.group(1)).split("+")[0]
        if installed != m.group(3):
            wrong.append(f"{m.group(1)}: pinned {m.group(3)}, installed {installed}")
    assert not wrong, "\n".join(wrong)


def test_cpu_code_paths_import_no_gpu_extra():
    modules = sorted({".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                      for p in _source_files() if "config" not in p.parts})
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n"
            "    importlib.import_module(m)\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(GPU_ONLY)!r})\n"
            "print('GPU-ONLY:', bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GPU-ONLY: []" in out.stdout, out.stdout


@pytest.mark.parametrize("script", ["scripts/setup_env.sh", "scripts/test.sh", ".ci/run"])
def test_scripts_are_strict_bash(script):
    text = (REPO / script).read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
