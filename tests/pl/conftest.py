"""Fixtures for the plotting tests: the Agg backend and B4 with (simulated) predictions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

PRED_GENES = ["ERBB2", "GRB7", "COL1A1"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def b4_pred(b4):
    """B4 sharing the image and shapes of the session fixture, with a copied table holding predictions.

    ``obsm["hist_pred"]`` is an array (genes in ``uns["hist_pred"]["genes"]``): the log-normalised measurement
    plus seeded noise, so the correlation is known to be high but below 1.
    """
    from spatialdata import SpatialData

    from hist_sd._core._expr import measured_matrix

    table = b4.tables["table"].copy()
    meas, _ = measured_matrix(table, PRED_GENES)
    noise = np.random.default_rng(0).normal(scale=0.6, size=meas.shape)
    table.obsm["hist_pred"] = meas + noise
    table.uns["hist_pred"] = {"genes": np.asarray(PRED_GENES)}
    table.obs["region_label"] = pd.Categorical(np.where(meas[:, 0] > 3, "high", "low"))
    return SpatialData(images=dict(b4.images), shapes=dict(b4.shapes), tables={"table": table})
