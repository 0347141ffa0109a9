"""Checks of the tutorials' sources (``docs/tutorials/*.py``, jupytext "percent" scripts).

The tutorials are executed by the documentation build (``sphinx-build -W``, myst-nb), which fails when a cell
raises; here they are checked to parse, to be well-formed notebooks and to use only public API names that exist.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import hist_sd as hs

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("[0-9]*.py"))
SUBPACKAGES = ("io", "datasets", "pp", "tl", "pl", "get", "model", "encoders", "nn", "models")
TOP_LEVEL = ("settings",)


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


def check_public(names: set[tuple[str, str]], where: str) -> None:
    for mod, name in sorted(names):
        if mod in TOP_LEVEL:
            assert hasattr(getattr(hs, mod), name), f"{where}: `hs.{mod}.{name}` does not exist"
            continue
        assert mod in SUBPACKAGES, f"{where}: `hs.{mod}` is not a public subpackage"
        assert name in getattr(hs, mod).__all__, f"{where}: `hs.{mod}.{name}` is not public API"


def test_tutorials_exist_and_are_listed() -> None:
    assert [p.name for p in TUTORIALS] == [
        "01_expression_her2st.py",
        "02_tumour_regions.py",
        "03_whole_slide.py",
        "04_survival_ghanet.py",
        "05_downstream_biology.py",
        "06_application_module.py",
    ]
    index = (ROOT / "docs" / "tutorials" / "index.md").read_text(encoding="utf-8")
    for path in TUTORIALS:
        assert f"\n{path.stem}\n" in index, f"{path.name} is not in the toctree of docs/tutorials/index.md"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_compiles_and_uses_public_api(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    compile(tree, str(path), "exec")
    names = hs_names(tree)
    assert len(names) >= 5, f"{path.name} uses only {len(names)} hist_sd functions"
    check_public(names, path.name)
    # no private helpers in user-facing code; figures are shown, not only written to files
    assert not re.search(r"\bhs\.\w+\._|\bhs\._|from hist_sd\.\w*\._|import hist_sd\.\w*\._", source)
    assert 'matplotlib.use("Agg")' not in source


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.name)
def test_tutorial_is_a_jupytext_notebook(path: Path) -> None:
    jupytext = pytest.importorskip("jupytext", reason="the docs extra is not installed")
    nb = jupytext.read(path, fmt="py:percent")
    kinds = [cell.cell_type for cell in nb.cells]
    assert kinds[0] == "markdown", "a tutorial opens with a markdown cell"
    assert nb.cells[0].source.startswith("# "), "the first cell holds the page title"
    assert kinds.count("code") >= 5 and kinds.count("markdown") >= 5
    assert "quick run" in nb.cells[0].source, "the introduction says that the tutorial is a quick run"
    assert all(cell.source.strip() for cell in nb.cells), "no empty cells"


def test_tutorial_check_catches_missing_names() -> None:
    tree = ast.parse("import hist_sd as hs\nhs.tl.train(x)\nhs.tl.no_such_function(x)\nhs.settings.nope\n")
    assert hs_names(tree) == {("tl", "train"), ("tl", "no_such_function"), ("settings", "nope")}
    with pytest.raises(AssertionError, match="no_such_function"):
        check_public(hs_names(tree) - {("settings", "nope")}, "snippet")
    with pytest.raises(AssertionError, match="nope"):
        check_public({("settings", "nope")}, "snippet")
