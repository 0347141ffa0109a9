"""Every ```python example of README.md and docs/*.md runs as written, and the licence is where pyproject says.

The blocks of one page run in order in one fresh namespace (a page reads like a notebook), in a temporary
working directory, with the Agg backend and ``HIST_SD_DATA_DIR`` pointing at the data mirror. docs/api.md holds
signatures only and is not run.
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")]
PAGES = [p for p in PAGES if "```python" in p.read_text(encoding="utf-8")]

#: Documented knobs set small for a page whose example would train for minutes at the package defaults.
SMALL_EPOCHS: dict[str, int] = {"docs/index.md": 20}  # hs.model.METHODS["hist"].epochs (docs/index.md, Install)


def code_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_pages_found() -> None:
    assert [page_id(p) for p in PAGES] == ["README.md", "docs/index.md"]
    assert all(code_blocks(p.read_text(encoding="utf-8")) for p in PAGES)


@pytest.mark.filterwarnings("default::hist_sd.TooFewGenesWarning")  # shown to a user; expected for 50 genes
@pytest.mark.parametrize("path", PAGES, ids=page_id)
def test_examples_run(path: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import hist_sd as hs

    page = page_id(path)
    monkeypatch.setenv("HIST_SD_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    if page in SMALL_EPOCHS:
        spec = hs.model.METHODS["hist"]
        monkeypatch.setitem(hs.model.METHODS, "hist", dataclasses.replace(spec, epochs=SMALL_EPOCHS[page]))
    namespace: dict[str, object] = {"__name__": "__example__"}
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        for i, block in enumerate(code_blocks(path.read_text(encoding="utf-8"))):
            exec(compile(block, f"{page} python block {i}", "exec"), namespace)
    finally:
        plt.close("all")
    print(f"\n{page}: examples ran in {time.perf_counter() - t0:.0f} s ({time.process_time() - cpu0:.0f} s CPU)")


def test_license_is_bsd_3_clause() -> None:
    import tomllib

    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, hist_sd developers" in text
    for clause in ("Redistributions of source code must retain", "Redistributions in binary form must reproduce",
                   "Neither the name of the copyright holder nor the names of its"):
        assert clause in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] in ({"text": "BSD-3-Clause"}, "BSD-3-Clause")
