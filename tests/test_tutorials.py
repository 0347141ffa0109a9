"""Smoke checks of the tutorials and the docs: they compile and use only public API names that exist.

The tutorials themselves train models on full sections (minutes); they are not run here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import hist_sd as hs

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))
# docs pages with example code (api.md holds signatures, not runnable code)
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if "```python" in p.read_text(encoding="utf-8") and p.name != "api.md")
SUBPACKAGES = ("io", "datasets", "pp", "tl", "pl", "get", "model", "encoders", "nn", "models")
ALIASES = ("models",)  # hs.models is hs.nn; api.md documents it once, under hs.nn


def hs_names(tree: ast.AST) -> set[tuple[str, str]]:
    """Every ``hs.<subpackage>.<name>`` attribute chain used in a module."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "hs"
        ):
            found.add((node.value.attr, node.attr))
    return found


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.DOTALL)


def check_public(names: set[tuple[str, str]], where: str) -> None:
    for mod, name in sorted(names):
        assert mod in SUBPACKAGES, f"{where}: `hs.{mod}` is not a public subpackage"
        assert name in getattr(hs, mod).__all__, f"{where}: `hs.{mod}.{name}` is not public API"


def test_tutorials_exist() -> None:
    assert [p.name for p in DOCS] == ["index.md"]
    assert [p.name for p in TUTORIALS] == ["01_expression_her2st.py", "02_tumour_regions.py"]


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_compiles_and_uses_public_api(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    compile(tree, str(path), "exec")
    names = hs_names(tree)
    assert len(names) >= 5, f"{path.name} uses only {len(names)} hist_sd functions"
    check_public(names, path.name)
    # no private helpers in user-facing code
    assert not re.search(r"\bhs\.\w+\._|\bhs\._|from hist_sd\.\w*\._|import hist_sd\.\w*\._", source)


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_is_jupytext_percent(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    cells = [i for i, line in enumerate(lines) if line.startswith("# %%")]
    markdown = [i for i in cells if lines[i].startswith("# %% [markdown]")]
    assert len(cells) - len(markdown) >= 5 and len(markdown) >= 5
    assert lines[cells[0]].startswith("# %% [markdown]"), "a tutorial opens with a markdown cell"
    for start in markdown:  # a markdown cell holds comment lines only, up to the next cell
        end = next((c for c in cells if c > start), len(lines))
        body = [line for line in lines[start + 1 : end] if line.strip()]
        assert body and all(line.startswith("#") for line in body), f"markdown cell at line {start + 1}"


def test_tutorial_check_catches_missing_names() -> None:
    tree = ast.parse("import hist_sd as hs\nhs.tl.train(x)\nhs.tl.no_such_function(x)\n")
    assert hs_names(tree) == {("tl", "train"), ("tl", "no_such_function")}
    with pytest.raises(AssertionError, match="no_such_function"):
        check_public(hs_names(tree), "snippet")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_code_uses_public_api(path: Path) -> None:
    blocks = code_blocks(path.read_text(encoding="utf-8"))
    assert blocks
    for i, block in enumerate(blocks):
        tree = ast.parse(block, filename=f"{path.name} block {i}")
        check_public(hs_names(tree), f"{path.name} block {i}")


def test_api_reference_lists_every_public_name() -> None:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [
        f"hs.{mod}.{name}"
        for mod in SUBPACKAGES
        if mod not in ALIASES
        for name in getattr(hs, mod).__all__
        if f"### `hs.{mod}.{name}`" not in text
    ]
    assert not missing, f"docs/api.md lacks {missing}; run `python docs/make_api.py`"
    documented = set(re.findall(r"^### `hs\.(\w+)\.(\w+)`", text, flags=re.MULTILINE))
    stale = sorted(f"hs.{m}.{n}" for m, n in documented if n not in getattr(hs, m).__all__)
    assert not stale, f"docs/api.md documents names that no longer exist: {stale}; run `python docs/make_api.py`"
