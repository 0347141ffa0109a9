"""The documentation's machinery: shared parameter text, the API page, offline intersphinx, benchmark tables.

The site itself is built (tutorials executed, warnings as errors) by ``.ci/run`` after the tests.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path
from unittest import mock

import pandas as pd
import pytest

import hist_sd as hs
from hist_sd._docs import PARAMS, doc_params

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBPACKAGES = ("io", "datasets", "pp", "tl", "pl", "get", "model", "encoders", "nn")


@pytest.fixture(scope="module")
def ext():
    """The build's own extensions (docs/_ext) as modules."""
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import api_page
        import benchmarks_page

        yield api_page, benchmarks_page
    finally:
        sys.path.remove(str(DOCS / "_ext"))


def test_placeholders_expand_to_the_shared_text() -> None:
    for fn in (hs.tl.predict, hs.tl.train, hs.pp.features, hs.get.predictions):
        assert "%(" not in fn.__doc__
    assert PARAMS["table_key"] in hs.tl.predict.__doc__ and PARAMS["device"] in hs.tl.train.__doc__
    assert "    table_key\n        " + PARAMS["tables_key"] in hs.tl.train.__doc__


def test_every_public_docstring_is_expanded() -> None:
    """Sphinx renders ``__doc__``: no public function may show a raw ``%(name)s`` placeholder."""
    for mod in SUBPACKAGES:
        for name in getattr(hs, mod).__all__:
            doc = getattr(getattr(hs, mod), name).__doc__ or ""
            assert not re.search(r"%\(\w+\)s", doc), f"hs.{mod}.{name} has an unexpanded placeholder"


def test_unknown_placeholder_is_an_error() -> None:
    def f() -> None:
        """Doc.

        Parameters
        ----------
        %(nope)s
        """

    with pytest.raises(KeyError, match="nope"):
        doc_params(f)


def test_old_generator_is_gone() -> None:
    assert not (DOCS / "make_api.py").exists() and not (DOCS / "api.md").exists()
    assert (DOCS / "conf.py").is_file()


def test_api_page_lists_every_public_name(ext) -> None:
    api_page, _ = ext
    text = api_page.api_page()
    for mod in SUBPACKAGES:
        for name in getattr(hs, mod).__all__:
            documented = (
                re.search(rf"currentmodule:: hist_sd\.{mod}\n(?:.*\n)*?   {name}\n", text)
                or f".. py:data:: hist_sd.{mod}.{name}\n" in text
                or f"`hs.{mod}.{name}` is {{obj}}" in text
            )
            assert documented, f"hs.{mod}.{name} is missing from the API page"
    assert "   settings\n   HistSDSettings\n" in text
    # an object exported twice (hs.tl.HistModel is hs.model.HistModel) is documented once, where it is defined
    assert "`hs.tl.HistModel` is {obj}`hist_sd.model.HistModel`" in text


def test_intersphinx_is_offline_safe(tmp_path) -> None:
    """Every inventory falls back to a local empty one, so a missing network is an info message, not a warning."""
    sphinx_inventory = pytest.importorskip("sphinx.util.inventory", reason="the docs extra is not installed")
    namespace: dict = {"__file__": str(DOCS / "conf.py")}
    stub = type(sys)("api_page")
    stub.write = lambda srcdir: None  # reading the configuration must not write the API page here
    saved = sys.modules.get("api_page")
    sys.modules["api_page"] = stub
    try:
        with mock.patch.dict(os.environ), mock.patch.object(sys, "path", list(sys.path)):  # conf.py sets both
            exec(compile((DOCS / "conf.py").read_text(encoding="utf-8"), str(DOCS / "conf.py"), "exec"), namespace)
    finally:
        sys.modules.pop("api_page")
        if saved is not None:
            sys.modules["api_page"] = saved
    mapping = namespace["intersphinx_mapping"]
    assert {"anndata", "scanpy", "squidpy", "spatialdata", "decoupler", "infercnvpy", "lifelines", "torch"} <= set(mapping)
    for _name, (url, locations) in mapping.items():
        assert url.startswith("https://")
        remote, local = locations
        assert remote is None and Path(local).is_file()
        with open(local, "rb") as f:
            inv = sphinx_inventory.InventoryFile.load(f, url, lambda base, path: base + path)
        assert len(getattr(inv, "data", inv)) == 0


def _tables(page: str) -> list[dict[str, str]]:
    out = []
    for arg, body in re.findall(r"```\{benchmark-table\} (\S+)\n(.*?)```", page, flags=re.DOTALL):
        opts = dict(re.findall(r"^:(\w+): (.*)$", body, flags=re.MULTILINE))
        out.append({"path": arg, **opts})
    return out


def test_benchmark_tables_read_existing_result_files() -> None:
    tables = _tables((DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    assert {t["path"] for t in tables} == {
        "benchmarks/her2st/benchmark.csv",
        "benchmarks/her2st/tumor_labels.csv",
        "benchmarks/her2st/tumor_labels_cv.csv",
        "benchmarks/her2st/tumor_segmentation.csv",
        "benchmarks/survival/summary.csv",
        "benchmarks/downstream/downstream.csv",
        "benchmarks/outcome/synthetic.csv",
        "benchmarks/outcome/tcga_head.csv",
        "benchmarks/features/features.csv",
    }
    for t in tables:
        df = pd.read_csv(DOCS / t["path"])
        if "query" in t:
            df = df.query(t["query"])
        assert len(df), f"{t['path']}: no rows match {t.get('query')!r}"
        cols = [c.strip() for c in t["columns"].split(",")]
        assert set(cols) <= set(df.columns), f"{t['path']} lacks {set(cols) - set(df.columns)}"


def test_benchmark_table_directive_renders_the_file(ext, tmp_path) -> None:
    """A tiny Sphinx project: the table shows the file's numbers; a column the file lacks fails the build."""
    pytest.importorskip("sphinx", reason="the docs extra is not installed")
    from sphinx.application import Sphinx

    src = tmp_path / "src"
    src.mkdir()
    pd.DataFrame({"method": ["hist", "ridge"], "score": [0.31234, 0.2]}).to_csv(src / "r.csv", index=False)
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\nextensions = ['benchmarks_page']\n")
    (src / "index.rst").write_text("T\n=\n\n.. benchmark-table:: r.csv\n   :columns: method, score\n   :digits: 2\n")
    app = Sphinx(src, src, tmp_path / "out", tmp_path / "dt", "html", status=None, warning=None, freshenv=True)
    app.build()
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "0.31" in html and "0.312" not in html and "ridge" in html
    (src / "index.rst").write_text("T\n=\n\n.. benchmark-table:: r.csv\n   :columns: method, nope\n")
    warnings = io.StringIO()
    app = Sphinx(src, src, tmp_path / "out2", tmp_path / "dt2", "html", status=None, warning=warnings, freshenv=True,
                 warningiserror=True)
    app.build()
    assert app.statuscode != 0 and "has no columns ['nope']" in warnings.getvalue()
