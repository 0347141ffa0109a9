"""Fixtures for the model tests: deterministic torch settings and a real spot layout (her2st B4 grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every model test starts from the same seed, on few threads (the test machine is shared)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def b4_grid(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Integer legacy-ST array (row, col) of the selected spots of her2st B4 (283 spots)."""
    spots = pd.read_csv(data_dir / "her2st" / "data" / "ST-spotfiles" / "B4_selection.tsv", sep="\t")
    spots = spots[spots["selected"] == 1]
    return spots["y"].to_numpy(int), spots["x"].to_numpy(int)
