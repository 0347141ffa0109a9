from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hist_sd as hs
from hist_sd._core._image import get_image


@pytest.fixture(scope="module")
def mob(data_dir: Path):
    return hs.datasets.mob(data_dir=data_dir, scale_factors=None)


def test_mob_sections(mob):
    assert list(mob) == ["Rep1", "Rep2", "Rep11"]
    n_obs = {s: sd.tables["table"].n_obs for s, sd in mob.items()}
    assert n_obs == {"Rep1": 267, "Rep2": 280, "Rep11": 262}
    for section, sd in mob.items():
        t = sd.tables["table"]
        assert t.n_vars > 15000 and "Nrf1" in t.var_names
        assert t.uns["hist_sd"]["mpp"] == pytest.approx(2.75, abs=0.02)
        assert (t.obs["section"] == section).all()
        img = get_image(sd, table=t)
        assert img.shape[0] == 3 and 2300 < img.shape[1] < 2500
        # spots sit on the (darker) tissue
        xy = np.rint(t.obsm["spatial"]).astype(int)
        under = np.asarray(img.values[:, xy[:, 1], xy[:, 0]], dtype=float).mean()
        assert under < np.median(np.asarray(img.values, dtype=float).mean(axis=0)) - 10


def test_mob_bad_input(data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with pytest.raises(ValueError, match="unknown mob section.*Rep3.*Rep1, Rep2, Rep11"):
        hs.datasets.mob("Rep3", data_dir=data_dir)
    monkeypatch.delenv("HIST_SD_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"local mirror only.*data_dir=.*HIST_SD_DATA_DIR"):
        hs.datasets.mob()
    (tmp_path / "mob_stahl2016" / "counts").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no counts file 'Rep2.tsv.gz'"):
        hs.datasets.mob(["Rep2"], data_dir=tmp_path)
