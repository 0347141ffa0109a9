"""Shared fixtures: the real data mirror (``HIST_SD_DATA_DIR``, default ``../shared/data``) and small sections."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

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


@pytest.fixture(scope="session")
def blca(data_dir: Path):
    """``hs.datasets.tcga("blca")`` (real HIPT features, MCAT genomics, 5 folds), loaded once; ``load_s`` is the
    time it took. Do not modify: copy (``blca.subset(...)``) first."""
    import time

    import hist_sd as hs

    t0 = time.perf_counter()
    cohort = hs.datasets.tcga("blca", data_dir=data_dir)
    cohort.load_s = time.perf_counter() - t0
    return cohort


#: µm per pixel of the real whole-slide image of the data mirror (wsi/CMU-1-Small-Region.svs).
SVS_MPP = 0.499


@pytest.fixture(scope="session")
def svs(data_dir: Path) -> Path:
    """The real Aperio SVS of the data mirror (2220 x 2967 px, 0.499 µm/px, one level)."""
    return data_dir / "wsi" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def svs_rgb(svs: Path) -> np.ndarray:
    """The real slide's pixels ``(y, x, 3)``, decoded once with tiffslide itself (the reference)."""
    import tiffslide

    with tiffslide.TiffSlide(svs) as ts:
        return np.asarray(ts.read_region((0, 0), 0, ts.dimensions, as_array=True))


@pytest.fixture(scope="session")
def pyramid_tiff(svs_rgb: np.ndarray, tmp_path_factory) -> Path:
    """The real slide's pixels as a 3-level JPEG-tiled pyramidal TIFF (downsamples 1, 4, 16) with 0.499 µm/px tags."""
    import tifffile

    from hist_sd._core._image import block_mean

    path = tmp_path_factory.mktemp("wsi") / "pyramid.tif"
    levels = [svs_rgb]
    for k in (4, 4):
        levels.append(np.moveaxis(block_mean(np.moveaxis(levels[-1], -1, 0), k, dtype=np.uint8), 0, -1))
    opts = {"tile": (256, 256), "photometric": "rgb", "compression": "jpeg", "resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tw:
        for i, lev in enumerate(levels):
            res = 1e4 / SVS_MPP * lev.shape[1] / svs_rgb.shape[1]
            extra = {"subifds": len(levels) - 1} if i == 0 else {"subfiletype": 1}
            tw.write(lev, resolution=(res, res), **opts, **extra)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small models train far faster on one thread than on two oversubscribed ones."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches written by the package (e.g. ONNX exports of encoders) go to a temporary folder, not ~/.cache."""
    import os

    old = os.environ.get("HIST_SD_CACHE_DIR")
    os.environ["HIST_SD_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("HIST_SD_CACHE_DIR", None)
    else:
        os.environ["HIST_SD_CACHE_DIR"] = old


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


@pytest.fixture(scope="session")
def visium(data_dir: Path) -> AnnData:
    """Every spot of the 10x Visium fixture's array (4,992 spots, 4,235 in tissue), seeded values. Copy before changing."""
    pos = pd.read_csv(
        data_dir / "visium_fixture" / "spatial" / "tissue_positions_list.csv",
        header=None,
        names=["barcode", "in_tissue", "array_row", "array_col", "pxl_row", "pxl_col"],
        index_col=0,
    )
    rng = np.random.default_rng(0)
    ad = AnnData(
        X=sparse.random(len(pos), 30, density=0.3, format="csr", random_state=1, dtype=np.float32),
        obs=pos,
        obsm={"spatial": pos[["pxl_col", "pxl_row"]].to_numpy(float), "X_hist": rng.normal(size=(len(pos), 7))},
    )
    ad.uns["hist_sd"] = {"technology": "visium"}
    return ad


# --- seeded synthetic slides (training / prediction tests): expression is a function of the features ---
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


def noisy_prediction(table: AnnData, n_genes: int, *, scale: float, seed: int = 0) -> list[str]:
    """Put 'predictions' of the ``n_genes`` most detected genes into ``obsm["hist_pred"]``: the measured
    expression (log1p CP10k) plus seeded Gaussian noise of sd ``scale``. Returns the genes."""
    from hist_sd._core._expr import measured_matrix

    detected = np.asarray((table.X > 0).sum(axis=0)).ravel()
    genes = list(table.var_names[np.argsort(-detected, kind="stable")[:n_genes]])
    meas, _ = measured_matrix(table, genes)
    noise = np.random.default_rng(seed).normal(scale=scale, size=meas.shape)
    table.obsm["hist_pred"] = (meas + noise).astype(np.float32)
    table.uns["hist_pred"] = {"genes": np.asarray(genes)}
    return genes


def save_ridge_model(path: Path, *, mpp: float, spacing_px: float) -> Path:
    """A ridge model of 4 genes on 96 seeded spots whose features are recorded as efficientnet-lite0's (100 µm
    patches at ``mpp``), saved to ``path``: a cheap expression model for command-line tests."""
    import pandas as pd
    from scipy import sparse

    import hist_sd as hs

    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(96), 12)
    feats = rng.normal(size=(96, 1280)).astype(np.float32)
    x = np.hstack([rng.poisson(np.exp(1.0 + 0.3 * feats[:, :4]) * 20), rng.poisson(50, size=(96, 10))])
    ad = AnnData(X=sparse.csr_matrix(x.astype(np.float32)),
                 obs=pd.DataFrame({"array_row": rows, "array_col": cols, "in_tissue": 1},
                                  index=[f"{c}x{r}" for r, c in zip(rows, cols, strict=True)]),
                 var=pd.DataFrame(index=[f"G{i}" for i in range(4)] + [f"F{i}" for i in range(10)]))
    ad.obsm["spatial"] = np.column_stack([cols * spacing_px, rows * spacing_px])
    ad.obsm["X_hist"] = feats
    ad.uns["X_hist"] = {"params": {"encoder": "efficientnet-lite0", "patch_um": 100.0, "mpp": mpp}}
    ad.uns["hist_sd"] = {"mpp": mpp, "spot_diameter_um": 100.0, "spot_spacing_um": 200.0, "technology": "st"}
    hs.tl.train(ad, genes=[f"G{i}" for i in range(4)], method="ridge", progress=False).save(path)
    return path


@pytest.fixture(scope="session")
def predict_noisily():
    """:func:`noisy_prediction` (tests take it as a fixture: conftest is not importable as a module)."""
    return noisy_prediction


@pytest.fixture(scope="session")
def ridge_model_file():
    """:func:`save_ridge_model`."""
    return save_ridge_model
