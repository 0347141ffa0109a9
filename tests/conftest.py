"""Shared fixtures: the real data mirror (``HIST_SD_DATA_DIR``, default ``../shared/data``) and small sections."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _data_dir() -> Path:
    env = os.environ.get("HIST_SD_DATA_DIR")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data")


DATA_DIR = _data_dir()
HER2ST = DATA_DIR / "her2st" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data mirror; tests needing it fail loudly (not skip) when it is missing."""
    if not (DATA_DIR / "her2st").is_dir():
        pytest.fail(f"Shared data not found at {DATA_DIR}; set HIST_SD_DATA_DIR.")
    return DATA_DIR


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small models train far faster on one thread than on two oversubscribed ones."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never download: any attempt to open a URL fails."""
    import urllib.request

    def _refuse(*args, **kwargs):
        raise RuntimeError("tests must not download")

    monkeypatch.setattr(urllib.request, "urlopen", _refuse)


@pytest.fixture(scope="session")
def b4(data_dir: Path):
    """her2st section B4 (283 spots, with its H&E image), read once per session. Do not modify: copy first."""
    import hist_sd as hs

    d = data_dir / "her2st" / "data"
    return hs.io.read_st(
        d / "ST-cnts" / "B4.tsv.gz",
        d / "ST-spotfiles" / "B4_selection.tsv",
        d / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg",
        patient="B",
    )
