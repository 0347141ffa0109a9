"""hs.settings: checked values, the "hist_sd" logger, device and progress defaults, third-party chatter."""

from __future__ import annotations

import logging
import sys

import pytest

import hist_sd as hs
from hist_sd._core import _runtime
from hist_sd._core._settings import quiet_third_party


@pytest.fixture(autouse=True)
def _restore():
    logger = logging.getLogger("hist_sd")
    level = logger.level
    with hs.settings.override(verbosity="warning", progress=True, device="auto", n_jobs=1):
        yield
    logger.setLevel(level)


def test_values_are_checked_and_shown():
    assert repr(hs.settings).startswith("HistSDSettings(verbosity='warning'")
    for name, bad, err in [("verbosity", "loud", ValueError), ("verbosity", 7, ValueError),
                           ("progress", "yes", TypeError), ("device", "gpu", ValueError),
                           ("n_jobs", 0, ValueError), ("n_jobs", True, ValueError)]:
        with pytest.raises(err, match=name):
            setattr(hs.settings, name, bad)
    with pytest.raises(TypeError, match="colour"):
        with hs.settings.override(colour="red"):
            pass


def test_verbosity_sets_the_hist_sd_logger():
    hs.settings.verbosity = "info"
    assert logging.getLogger("hist_sd").level == logging.INFO and hs.settings.verbosity_level == 2
    hs.settings.verbosity = 0
    assert logging.getLogger("hist_sd").level == logging.ERROR and hs.settings.verbosity == "error"


def test_override_restores_and_defaults_follow_the_settings():
    torch = pytest.importorskip("torch")
    with hs.settings.override(device="cpu", progress=False, n_jobs=3):
        assert _runtime.get_device("auto") == torch.device("cpu")
        assert list(_runtime.progress(range(3), enabled=True)) == [0, 1, 2]
        assert _runtime.n_jobs(None) == 3 and _runtime.n_jobs(2) == 2
    assert hs.settings.device == "auto" and hs.settings.progress is True and hs.settings.n_jobs == 1
    assert _runtime.get_device("cpu") == torch.device("cpu")  # an explicit device wins


def test_progress_off_silences_bars(capsys):
    with hs.settings.override(progress=False):
        list(_runtime.progress(range(5), enabled=True, desc="quiet"))
    list(_runtime.progress(range(5), enabled=True, desc="shown"))
    err = capsys.readouterr().err
    assert "quiet" not in err and "shown" in err


def test_infercnvpy_chatter_follows_the_settings(capsys):
    import infercnvpy  # noqa: F401 - loads infercnvpy.tl._infercnv
    import scanpy as sc
    from tqdm.auto import tqdm

    module = sys.modules["infercnvpy.tl._infercnv"]
    before = sc.settings.verbosity
    with hs.settings.override(progress=False, verbosity="warning"), quiet_third_party():
        assert int(sc.settings.verbosity) == 0  # scanpy's "Skipped N genes" warning is not shown
        list(module.tqdm(range(3), desc="cnvbar"))
    assert "cnvbar" not in capsys.readouterr().err
    assert module.tqdm is tqdm and sc.settings.verbosity == before  # restored
    with hs.settings.override(verbosity="info"), quiet_third_party():
        assert int(sc.settings.verbosity) == 1
