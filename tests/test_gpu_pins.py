"""The GPU extras' pins in pyproject.toml agree with the table in docs/gpu.md (issue 16, item 3)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def pyproject_pins() -> dict[str, str]:
    """name -> exact version of every ``name==version`` requirement (dependencies and extras)."""
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(data["project"]["dependencies"])
    for extra in data["project"]["optional-dependencies"].values():
        reqs.extend(extra)
    pins = {}
    for req in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
        if m:
            pins[m.group(1).lower()] = m.group(3)
    return pins


def doc_table() -> dict[str, str]:
    """Rows of the pin table in docs/gpu.md: | `name` | `version` | ... |"""
    text = (REPO / "docs" / "gpu.md").read_text()
    rows = re.findall(r"^\|\s*`([A-Za-z0-9_.\-]+)`\s*\|\s*`([^`]+)`\s*\|", text, flags=re.M)
    assert rows, "docs/gpu.md has no pin table rows (| `name` | `version` | ...)"
    return {name.lower(): version for name, version in rows}


def test_gpu_extras_are_exact_pins():
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = data["project"]["optional-dependencies"]
    for extra in ("vllm", "flash-attn"):
        assert extras[extra] and all("==" in r for r in extras[extra]), \
            f"extra {extra!r} is not pinned: {extras[extra]}"


def test_doc_table_matches_pyproject():
    pins, table = pyproject_pins(), doc_table()
    for name in ("torch", "vllm", "flash-attn"):
        assert name in table, f"docs/gpu.md pin table lacks {name}"
    for name, version in table.items():
        assert pins.get(name) == version, (f"docs/gpu.md says {name}=={version}, pyproject.toml pins "
                                           f"{pins.get(name)!r}")
