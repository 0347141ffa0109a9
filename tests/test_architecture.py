"""The package's structure: no import cycles, layers import only downwards, and `import hist_sd` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "hist_sd"


def _module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """``{module: {hist_sd modules it imports}}``, at any depth (imports inside functions count too)."""
    modules = {_module_name(p, src): p for p in src.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from pkg import sub` imports the submodule; `from pkg import name` the package itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _package_deps(graph: dict[str, set[str]], package: str) -> set[str]:
    prefix = f"hist_sd.{package}"
    return {d for m, deps in graph.items() if m == prefix or m.startswith(prefix + ".") for d in deps}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_cycle_finder_finds_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "hist_sd"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from hist_sd import b\n")
    (pkg / "b.py").write_text("def f():\n    from hist_sd.a import x\n")
    g = import_graph(pkg)
    assert g["hist_sd.a"] == {"hist_sd.b"} and g["hist_sd.b"] == {"hist_sd.a"}
    assert find_cycle(g) == ["hist_sd.a", "hist_sd.b", "hist_sd.a"]


def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    # the package root only re-exports subpackages lazily; an edge to it is no cycle of real code
    g = {m: {d for d in deps if d != "hist_sd"} for m, deps in graph.items()}
    assert find_cycle(g) is None, f"import cycle: {' -> '.join(find_cycle(g) or [])}"


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("_core", {"_core", "_constants"}),
        ("nn", {"nn", "_core", "_constants", "_docs"}),
        ("model", {"model", "nn", "_core", "_constants", "_docs"}),
        ("train", {"train", "model", "nn", "_core", "_constants", "_docs"}),
        ("encoders", {"encoders", "_core", "_constants", "_docs"}),
        ("get", {"get", "_core", "_constants", "_docs"}),
    ],
)
def test_layers_import_only_downwards(graph: dict[str, set[str]], package: str, allowed: set[str]) -> None:
    bad = sorted(d for d in _package_deps(graph, package) if _layer(d) not in allowed)
    assert not bad, f"hist_sd.{package} imports {bad}"


def test_model_never_imports_train_and_nn_never_sees_anndata_layers(graph: dict[str, set[str]]) -> None:
    assert not {d for d in _package_deps(graph, "model") if _layer(d) == "train"}
    assert not {d for d in _package_deps(graph, "nn") if _layer(d) in {"pp", "tl", "io", "model", "train"}}


def test_import_hist_sd_does_not_import_torch() -> None:
    code = (
        "import sys, hist_sd as hs\n"
        "assert 'torch' not in sys.modules, 'import hist_sd imported torch'\n"
        "hs.tl, hs.pp, hs.io, hs.get, hs.model\n"
        "assert 'torch' not in sys.modules, 'a verb module imported torch at import time'\n"
        "hs.nn\n"
        "assert 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def code_lines(lines: list[str], first: int, last: int) -> int:
    """Lines ``first..last`` (1-based) that hold code: not blank, not only a comment."""
    return sum(1 for line in lines[first - 1 : last] if line.strip() and not line.strip().startswith("#"))


def test_no_function_over_80_lines_without_a_reason() -> None:
    """Long functions must say why in their docstring (a line starting with "Long:")."""
    long = []
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node) or ""
                body = node.body[1:] if doc else node.body
                if not body:
                    continue
                n = code_lines(lines, body[0].lineno, body[-1].end_lineno)
                if n > 80 and "Long:" not in doc:
                    long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines of code without a stated reason:\n" + "\n".join(long)
