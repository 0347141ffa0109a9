"""Sphinx configuration of the hist_sd documentation.

Build (from the repository root, with the ``docs`` extra installed)::

    HIST_SD_DATA_DIR=../shared/data sphinx-build -W -b html docs /tmp/hist_sd_docs

The tutorials (``docs/tutorials/*.py``, jupytext "percent" scripts) are executed by myst-nb during the build.
``HIST_SD_DOCS_EXECUTE=off`` skips the execution (pages then show the code without outputs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
import zlib
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
# sphinx-autodoc-typehints calls an API Sphinx 10 removes; the notice is for its authors, not for this build
warnings.filterwarnings("ignore", message=".*set_application.* is deprecated", module="sphinx_autodoc_typehints")
sys.path.insert(0, str(HERE / "_ext"))

import api_page  # noqa: E402

import hist_sd  # noqa: E402

api_page.write(HERE)  # api/index.md from the live __all__ of every subpackage

project = "hist_sd"
author = "hist_sd developers"
copyright = f"{date.today().year}, {author}"
release = version = hist_sd.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "benchmarks_page",
]

# --- sources -------------------------------------------------------------------------------------------------
# Markdown pages (MyST) and the tutorials: jupytext "percent" .py scripts read as notebooks.
nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
exclude_patterns = ["_build", "conf.py", "_ext", "**/__pycache__", "**.ipynb_checkpoints"]
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
templates_path = ["_templates"]

# --- tutorials are executed during the build ---------------------------------------------------------------
nb_execution_mode = "off" if os.environ.get("HIST_SD_DOCS_EXECUTE", "").lower() in {"0", "off", "no"} else "cache"
nb_execution_timeout = 1800  # per cell, seconds: feature extraction on 2 CPU cores takes minutes
nb_execution_raise_on_error = True  # a failing tutorial fails the build
nb_execution_show_tb = True
nb_merge_streams = True
# progress bars render as text or widgets in notebooks and say nothing in a static page; logs stay
os.environ.setdefault("TQDM_DISABLE", "1")
# import-time notices of third-party libraries in the executing kernel (tqdm without ipywidgets, squidpy's docrep)
# say nothing about the tutorial; hist_sd's own warnings and logs stay in the pages
os.environ.setdefault(
    "PYTHONWARNINGS",
    "ignore:IProgress not found,ignore:'n_jobs' is not a valid key,ignore:'show_progress_bar' is not a valid key",
)
os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
# the tutorials run in their own folder and Sphinx reads this file from docs/: a relative data mirror
# (`HIST_SD_DATA_DIR=../shared/data`, as the README and CI give it) is resolved from where sphinx-build was started
if os.environ.get("HIST_SD_DATA_DIR"):
    _launch = Path(os.environ.get("PWD") or Path(__file__).resolve().parents[1])
    os.environ["HIST_SD_DATA_DIR"] = str((_launch / Path(os.environ["HIST_SD_DATA_DIR"]).expanduser()).resolve())

# --- API reference ---------------------------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
typehints_use_signature = False
typehints_document_rtype = True
always_document_param_types = False
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
napoleon_custom_sections = [("Params", "params_style")]
# Type hints name classes that exist only under TYPE_CHECKING (torch, spatialdata, matplotlib, dask); they are
# shown as written instead of failing the -W build. References to other projects that intersphinx cannot
# resolve offline (below) are plain text; Sphinx does not warn about them unless nitpicky.
suppress_warnings = ["sphinx_autodoc_typehints.forward_reference", "sphinx_autodoc_typehints.guarded_import"]

# --- intersphinx, offline-safe -------------------------------------------------------------------------------------
# Every project lists two inventory locations: its website, then an empty local inventory. Online, the website's
# inventory is used and types link to anndata, scanpy, ... Offline (CI, air-gapped machines) the first fetch fails
# and Sphinx falls back to the empty one, which it reports as an info message ("encountered some issues ... but they
# had working alternatives"), not as a warning, so `-W` does not turn a missing network into a failed build.
_EMPTY_INV = Path(tempfile.gettempdir()) / "hist_sd_docs_empty_objects.inv"
if not _EMPTY_INV.is_file():
    _EMPTY_INV.write_bytes(
        b"# Sphinx inventory version 2\n# Project: none\n# Version: \n"
        b"# The remainder of this file is compressed using zlib.\n" + zlib.compress(b"")
    )
_INTERSPHINX = {
    "python": "https://docs.python.org/3/",
    "numpy": "https://numpy.org/doc/stable/",
    "pandas": "https://pandas.pydata.org/docs/",
    "anndata": "https://anndata.readthedocs.io/en/stable/",
    "scanpy": "https://scanpy.readthedocs.io/en/stable/",
    "squidpy": "https://squidpy.readthedocs.io/en/stable/",
    "spatialdata": "https://spatialdata.scverse.org/en/stable/",
    "decoupler": "https://decoupler.readthedocs.io/en/latest/",
    "infercnvpy": "https://infercnvpy.readthedocs.io/en/latest/",
    "lifelines": "https://lifelines.readthedocs.io/en/latest/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "matplotlib": "https://matplotlib.org/stable/",
}
intersphinx_mapping = {name: (url, (None, str(_EMPTY_INV))) for name, url in _INTERSPHINX.items()}
intersphinx_timeout = 5

# --- HTML ------------------------------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "hist_sd"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_show_sourcelink = True
