"""``benchmark-table``: a table rendered at build time from a benchmark result file (CSV), never retyped.

Usage in a MyST page::

    ```{benchmark-table} benchmarks/her2st/benchmark.csv
    :columns: dataset, protocol, method, mean_pearson, ci95_low, ci95_high
    :query: dataset == "her2st"
    :digits: 3
    ```

The path is relative to the documentation's source folder. ``:query:`` is a :meth:`pandas.DataFrame.query`
expression; ``:digits:`` rounds floats; ``:sort:`` names a column to sort by (descending with a leading ``-``).
A missing file or column is an error, so a stale page fails the build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective


def _cell(value: Any, digits: int) -> str:
    if isinstance(value, float):
        if pd.isna(value):
            return "–"
        return f"{value:.{digits}f}"
    return str(value).replace("|", "/")


class BenchmarkTable(SphinxDirective):
    """Render a CSV of benchmark results as a table."""

    required_arguments = 1
    has_content = False
    option_spec = {
        "columns": directives.unchanged,
        "query": directives.unchanged,
        "digits": directives.nonnegative_int,
        "sort": directives.unchanged,
        "caption": directives.unchanged,
    }

    def run(self) -> list[nodes.Node]:
        src = Path(self.env.srcdir) / self.arguments[0]
        self.env.note_dependency(str(src))
        if not src.is_file():
            raise self.error(f"benchmark-table: no result file {src}")
        df = pd.read_csv(src)
        if "query" in self.options:
            df = df.query(self.options["query"])
        if "sort" in self.options:
            key = self.options["sort"].strip()
            df = df.sort_values(key.lstrip("-"), ascending=not key.startswith("-"))
        if "columns" in self.options:
            cols = [c.strip() for c in self.options["columns"].split(",") if c.strip()]
            missing = [c for c in cols if c not in df.columns]
            if missing:
                raise self.error(f"benchmark-table: {src.name} has no columns {missing} (it has {list(df.columns)})")
            df = df[cols]
        if df.empty:
            raise self.error(f"benchmark-table: no rows of {src.name} match {self.options.get('query')!r}")
        digits = self.options.get("digits", 3)
        header = [str(c) for c in df.columns]
        rows = [[_cell(v, digits) for v in row] for row in df.itertuples(index=False)]
        return [_table(header, rows, self.options.get("caption"))]


def _table(header: list[str], rows: list[list[str]], caption: str | None) -> nodes.table:
    """A docutils table (built as nodes: the page may be MyST or reStructuredText)."""
    table = nodes.table(classes=["benchmark-table"])
    if caption:
        table += nodes.title(text=caption)
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)

    def row(cells: list[str]) -> nodes.row:
        r = nodes.row()
        for c in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=c)
            r += entry
        return r

    head = nodes.thead()
    head += row(header)
    body = nodes.tbody()
    body.extend(row(r) for r in rows)
    group += head
    group += body
    return table


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("benchmark-table", BenchmarkTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
