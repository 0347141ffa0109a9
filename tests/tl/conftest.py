"""Seeded synthetic slides for the training/prediction tests: expression is a function of the features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse


def make_section(name: str, patient: str, *, seed: int, n_rows: int = 10, n_cols: int = 12, d: int = 8,
                 n_genes: int = 6, noise: float = 0.1) -> AnnData:
    """A legacy-ST-like slide: spots on a square grid, features, and counts driven by the features."""
    rng = np.random.default_rng(seed)
    rr, cc = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    keep = rng.random(rr.size) > 0.15  # some empty grid cells
    rows, cols = rr.ravel()[keep] + 3, cc.ravel()[keep] + 5
    n = len(rows)
    feats = rng.normal(size=(n, d)).astype(np.float32)
    # shared (fixed) ground-truth map from features to log-rates: the same for every slide
    w = np.random.default_rng(12345).normal(scale=0.6, size=(d, n_genes))
    logit = 1.0 + feats @ w + noise * rng.normal(size=(n, n_genes))
    counts = rng.poisson(np.exp(logit) * 20).astype(np.float32)
    filler = rng.poisson(50, size=(n, 20)).astype(np.float32)  # other genes for the library size
    x = np.hstack([counts, filler])
    obs = pd.DataFrame(
        {
            "array_row": rows,
            "array_col": cols,
            "in_tissue": np.ones(n, int),
            "section": pd.Categorical([name] * n),
            "patient": pd.Categorical([patient] * n),
        },
        index=[f"{c}x{r}" for r, c in zip(rows, cols, strict=True)],
    )
    var = pd.DataFrame(index=[f"G{i}" for i in range(n_genes)] + [f"F{i}" for i in range(20)])
    ad = AnnData(X=sparse.csr_matrix(x), obs=obs, var=var)
    ad.obsm["spatial"] = np.column_stack([cols * 100.0, rows * 100.0])
    ad.obsm["X_hist"] = feats
    ad.uns["X_hist"] = {"params": {"encoder": "synthetic"}}
    ad.uns["hist_sd"] = {"mpp": 2.0, "spot_diameter_um": 100.0, "spot_spacing_um": 200.0, "technology": "st"}
    return ad


GENES = [f"G{i}" for i in range(6)]


@pytest.fixture
def sections() -> dict[str, AnnData]:
    return {
        "A1": make_section("A1", "A", seed=1),
        "A2": make_section("A2", "A", seed=2),
        "B1": make_section("B1", "B", seed=3),
        "C1": make_section("C1", "C", seed=4),
    }


@pytest.fixture
def section_maker():
    """The synthetic slide factory, for tests that need extra slides."""
    return make_section


@pytest.fixture
def genes() -> list[str]:
    return list(GENES)
