"""hs.tl.predict_slides: many slides on dask.distributed, resumable, a failing slide reported and the others done.

The slides are crops of the real her2st B4 H&E JPEG (0.6875 µm/px) written as JPEG and PNG; the model is a ridge
model trained on seeded synthetic 1280-d features recorded as efficientnet-lite0's, so the real encoder runs.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

import hist_sd as hs
from hist_sd.tl import _slides

MPP = 0.6875
#: (left, top, right, bottom) crops of B4's JPEG: tissue edge on glass, and dense tissue.
CROPS = {"s1.jpg": (1000, 4500, 2600, 6100), "s2.png": (2500, 5500, 4100, 7100)}
GENES = [f"G{i}" for i in range(6)]


def write_crops(jpg: Path, folder: Path) -> dict[str, Path]:
    """The crops of ``jpg`` as slide files in ``folder`` (PIL's size guard off only while reading B4)."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(jpg) as im:
            im.load()
            paths = {}
            for name, box in CROPS.items():
                paths[name] = folder / name
                im.crop(box).save(paths[name])
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    return paths


def train_tiny_model(path: Path) -> Path:
    """A ridge model on seeded synthetic efficientnet-lite0-sized features (expression driven by 8 of them)."""
    rng = np.random.default_rng(0)
    rows, cols = np.divmod(np.arange(120), 12)
    feats = rng.normal(size=(120, 1280)).astype(np.float32)
    rate = np.exp(1.0 + feats[:, :6] @ np.random.default_rng(1).normal(scale=0.4, size=(6, 6)))
    x = np.hstack([rng.poisson(rate * 20), rng.poisson(50, size=(120, 20))]).astype(np.float32)
    obs = pd.DataFrame({"array_row": rows, "array_col": cols, "in_tissue": 1, "section": "A1", "patient": "A"},
                       index=[f"{c}x{r}" for r, c in zip(rows, cols, strict=True)])
    ad = AnnData(X=sparse.csr_matrix(x), obs=obs, var=pd.DataFrame(index=GENES + [f"F{i}" for i in range(20)]))
    ad.obsm["spatial"] = np.column_stack([cols * 291.0, rows * 291.0])
    ad.obsm["X_hist"] = feats
    ad.uns["X_hist"] = {"params": {"encoder": "efficientnet-lite0", "patch_um": 100.0, "mpp": MPP}}
    ad.uns["hist_sd"] = {"mpp": MPP, "spot_diameter_um": 100.0, "spot_spacing_um": 200.0, "technology": "st"}
    model = hs.tl.train(ad, genes=GENES, method="ridge", progress=False)
    return model.save(path)


@pytest.fixture(scope="module")
def slides(data_dir, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("slides")
    paths = write_crops(data_dir / "her2st" / "data" / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg", folder)
    paths["corrupt.jpg"] = folder / "corrupt.jpg"
    paths["corrupt.jpg"].write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(4000))  # a broken JPEG
    from PIL import Image

    paths["blank.png"] = folder / "blank.png"
    Image.new("RGB", (900, 900), (236, 234, 240)).save(paths["blank.png"])  # glass, no tissue
    return paths


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return train_tiny_model(tmp_path_factory.mktemp("model") / "model.pt")


@pytest.fixture(scope="module")
def client():
    """An in-process cluster of 2 workers (fast to start; slides share one process, so they run one at a time)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as lc, \
            Client(lc) as cl:
        yield cl


def test_two_slides_done_then_resumed(slides, model_path, client, tmp_path, caplog):
    out = tmp_path / "out"
    paths = [slides["s1.jpg"], slides["s2.png"]]
    with caplog.at_level("WARNING", logger="hist_sd"):
        table = hs.tl.predict_slides(paths, model_path, out=out, mpp=MPP, client=client, progress=False)
    # a slide's warnings are logged by the caller, once per slide
    assert sum("TooFewGenesWarning" in r.getMessage() for r in caplog.records) == 2
    assert list(table.columns) == ["slide", "path", "status", "n_tiles", "seconds", "error", "zarr"]
    assert table["slide"].tolist() == ["s1", "s2"] and (table["status"] == "done").all()
    assert table["error"].isna().all() and (table["seconds"] > 0).all() and (table["n_tiles"] > 0).all()
    pd.testing.assert_frame_equal(pd.read_csv(out / "slides.csv"), _as_csv(table))

    s1 = hs.io.read_zarr(out / "s1.zarr")
    pred, tiles = s1.tables["hist_pred"], s1.tables["tiles"]
    assert pred.shape == (table.loc[0, "n_tiles"], len(GENES)) and list(pred.var_names) == GENES
    assert np.isfinite(pred.X).all() and tiles.obsm["X_hist"].shape == (pred.n_obs, 1280)
    assert tiles.uns["X_hist"]["params"]["encoder"] == "efficientnet-lite0"
    assert tiles.uns["X_hist"]["params"]["patch_um"] == 100.0  # the model's patches, on 200 µm tiles
    assert tiles.uns["hist_sd"]["spot_spacing_um"] == pytest.approx(200.0)
    assert len(s1.images) == 0 and s1.attrs["hist_sd"]["slide_path"] == str(slides["s1.jpg"].resolve())

    # the same call again: nothing to do, the tile counts of the earlier run are kept
    mtime = (out / "s2.zarr").stat().st_mtime_ns
    again = hs.tl.predict_slides(paths, model_path, out=out, mpp=MPP, client=client, progress=False)
    assert (again["status"] == "skipped").all()
    assert again["n_tiles"].tolist() == table["n_tiles"].tolist()
    # one store lost: only that slide is redone (a scheduler given by its address)
    shutil.rmtree(out / "s1.zarr")
    third = hs.tl.predict_slides(paths, model_path, out=out, mpp=MPP, client=client.scheduler.address,
                                 progress=False)
    assert third["status"].tolist() == ["done", "skipped"] and third["n_tiles"].tolist() == table["n_tiles"].tolist()
    assert (out / "s2.zarr").stat().st_mtime_ns == mtime
    np.testing.assert_allclose(hs.io.read_zarr(out / "s1.zarr").tables["hist_pred"].X, pred.X, rtol=1e-6)


def test_failing_slides_are_reported_and_the_others_finish(slides, model_path, client, tmp_path):
    out = tmp_path / "out"
    paths = [slides["corrupt.jpg"], slides["s1.jpg"], slides["blank.png"]]
    table = hs.tl.predict_slides(paths, str(model_path), out=out, mpp=MPP, client=client, progress=False)
    assert table["status"].tolist() == ["failed", "done", "failed"]
    errors = table.set_index("slide")["error"]
    assert errors["corrupt"].split(":")[0] in ("UnidentifiedImageError", "OSError", "ValueError"), errors["corrupt"]
    assert "No tissue" in errors["blank"]
    assert pd.isna(errors["s1"]) and table.loc[1, "n_tiles"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["s1.zarr", "slides.csv"]  # nothing half-written
    csv = pd.read_csv(out / "slides.csv")
    assert csv["status"].tolist() == ["failed", "done", "failed"] and "No tissue" in csv.loc[2, "error"]
    # a second run retries the failed slides only
    again = hs.tl.predict_slides(paths, str(model_path), out=out, mpp=MPP, client=client, progress=False)
    assert again["status"].tolist() == ["failed", "skipped", "failed"]


@pytest.mark.slow  # ~10 s (worker processes start and import torch); the file exceeds 30 s without the mark
def test_default_local_cluster_on_the_real_svs(data_dir, model_path, tmp_path):
    """client=None: a LocalCluster of worker processes, started and closed by the call; a HistModel object; the
    real Aperio SVS read lazily with its own scale (0.499 µm/px, no `mpp` given)."""
    svs = data_dir / "wsi" / "CMU-1-Small-Region.svs"
    model = hs.tl.load_model(model_path)
    t0 = time.perf_counter()
    table = hs.tl.predict_slides([svs], model, out=tmp_path / "out", n_workers=1)
    assert table["status"].tolist() == ["done"], table["error"].tolist()
    assert time.perf_counter() - t0 < 60
    back = hs.io.read_zarr(tmp_path / "out" / "CMU-1-Small-Region.zarr")
    tiles = back.tables["tiles"]
    assert back.tables["hist_pred"].shape == (table.loc[0, "n_tiles"], len(GENES)) and tiles.n_obs >= 10
    assert tiles.uns["hist_sd"]["mpp"] == pytest.approx(0.499)
    assert tiles.uns["hist_sd"]["tile_px"] == pytest.approx(200 / 0.499)
    assert np.isfinite(back.tables["hist_pred"].X).all()


def test_arguments_are_checked_before_any_work(slides, model_path, tmp_path, monkeypatch):
    monkeypatch.setattr(_slides, "_run_jobs", lambda *a, **k: pytest.fail("slides ran despite invalid arguments"))
    good = [slides["s1.jpg"], slides["s2.png"]]

    def check(exc, match, paths=good, model=model_path, **kwargs):
        kwargs = {"out": tmp_path / "out", "mpp": MPP, **kwargs}
        with pytest.raises(exc, match=match):
            hs.tl.predict_slides(paths, model, **kwargs)

    check(FileNotFoundError, r"1 slide file\(s\) do not exist: '.*nope\.svs'", paths=[*good, tmp_path / "nope.svs"])
    (tmp_path / "other").mkdir()
    dup = tmp_path / "other" / "s1.png"
    dup.write_bytes(slides["s2.png"].read_bytes())
    check(ValueError, "two slides are both called 's1'", paths=[*good, dup])
    check(ValueError, "unknown slide format", paths=[model_path])
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    check(ValueError, "`model`: '.*junk.pt' is not a hist_sd model file", model=junk)
    check(FileNotFoundError, "`model`: no model file", model=tmp_path / "missing.pt")
    (tmp_path / "file").write_text("x")
    check(ValueError, "`out`: .* is a file", out=tmp_path / "file")
    check(ValueError, "`mpp` is needed for plain images", mpp=None)
    check(ValueError, "`tile_um` must be a positive", tile_um=-5)
    check(ValueError, r"must not set \['encoder'\]", features_kwargs={"encoder": "ctranspath"})
    check(TypeError, "`model` must be a HistModel", model=42)
    assert not (tmp_path / "out").exists()
    assert _slides.slide_name("a/b.c.ome.tiff") == "b.c" and _slides.slide_name("x.SVS") == "x"


def _as_csv(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` as it reads back from CSV."""
    back = table.copy()
    back["n_tiles"] = back["n_tiles"].astype("int64")
    back["error"] = back["error"].astype(float)
    return back

