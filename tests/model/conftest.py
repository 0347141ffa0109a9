"""Synthetic slides whose features carry the record ``hs.pp.features`` writes (encoder, patch size, mpp)."""

from __future__ import annotations

import pytest
from anndata import AnnData


@pytest.fixture
def recorded(section_maker) -> dict[str, AnnData]:
    out = {
        "A1": section_maker("A1", "A", seed=1),
        "B1": section_maker("B1", "B", seed=3),
        "C1": section_maker("C1", "C", seed=4),
    }
    for ad in out.values():
        ad.uns["X_hist"] = {"params": {"encoder": "synthetic", "patch_um": 100.0, "mpp": 2.0}}
    return out
