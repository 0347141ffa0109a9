from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._core._image import get_image
from hist_sd.datasets._her2st import HER2ST_IMAGES, HER2ST_LABELLED, HER2ST_SECTIONS, read_labels


def test_section_names(data_dir: Path):
    assert len(HER2ST_SECTIONS) == 30 and len(set(HER2ST_SECTIONS)) == 30
    assert {s[0] for s in HER2ST_SECTIONS} == set("BCDEFGH")
    root = data_dir / "her2st" / "data"
    on_disk = sorted(p.name.split(".")[0] for p in (root / "ST-cnts").glob("*.tsv.gz"))
    assert on_disk == sorted(HER2ST_SECTIONS)
    assert sorted(p.name.split("_")[0] for p in (root / "ST-pat" / "lbl").glob("*.tsv")) == sorted(HER2ST_LABELLED)
    assert all((root.parent / rel).is_file() for rel in HER2ST_IMAGES.values())


def test_done_when_b4(her2st_b4, data_dir: Path, tmp_path: Path):
    """hs.datasets.her2st(["B4"]): B4's spots x ~15k genes, on tissue, identical after a zarr round trip."""
    t = her2st_b4.tables["table"]
    assert t.n_obs == 283 and 15000 < t.n_vars < 16000
    counts = pd.read_csv(data_dir / "her2st" / "data" / "ST-cnts" / "B4.tsv.gz", sep="\t", index_col=0)
    assert sparse.issparse(t.X)
    np.testing.assert_array_equal(t.X.toarray(), counts.loc[t.obs_names, t.var_names].to_numpy())
    assert (t.obs["patient"] == "B").all() and (t.obs["section"] == "B4").all()
    assert "label" not in t.obs  # B4 has no pathologist annotation
    img = get_image(her2st_b4, table=t)
    xy = np.rint(t.obsm["spatial"]).astype(int)
    under = np.asarray(img.values[:, xy[:, 1], xy[:, 0]], dtype=float).mean()
    median = np.median(np.asarray(img[:, ::8, ::8].values, dtype=float).mean(axis=0))
    assert under < median - 20

    back = hs.io.read_zarr(hs.io.write_zarr(her2st_b4, tmp_path / "B4.zarr"))
    tb = back.tables["table"]
    assert (abs(tb.X - t.X)).nnz == 0
    pd.testing.assert_frame_equal(tb.obs, t.obs)
    pd.testing.assert_frame_equal(tb.var, t.var)
    np.testing.assert_array_equal(tb.obsm["spatial"], t.obsm["spatial"])
    assert dict(tb.uns["hist_sd"]) == dict(t.uns["hist_sd"])
    np.testing.assert_array_equal(get_image(back, table=tb).values, img.values)
    shapes_a, shapes_b = her2st_b4.shapes["B4"], back.shapes["B4"]
    np.testing.assert_array_equal(shapes_a.geometry.x, shapes_b.geometry.x)
    np.testing.assert_array_equal(shapes_a["radius"], shapes_b["radius"])
    assert hs.io.image_mpp(back) == pytest.approx(t.uns["hist_sd"]["mpp"])


def test_labels(her2st_labelled, data_dir: Path):
    b1 = her2st_labelled["B1"].tables["table"]
    assert isinstance(b1.obs["label"].dtype, pd.CategoricalDtype)
    assert b1.n_obs == 295 and b1.obs["label"].notna().all()
    assert b1.obs.loc["9x27", "label"] == "invasive cancer"  # file row x=9.004, y=26.938
    assert b1.obs.loc["9x17", "label"] == "breast glands"  # x=9.007, y=17.086
    counts = b1.obs["label"].value_counts()
    assert counts["connective tissue"] == 95 and counts["invasive cancer"] == 63
    g2 = her2st_labelled["G2"].tables["table"]
    assert set(g2.obs["label"].cat.categories) >= {"cancer in situ", "immune infiltrate", "invasive cancer"}
    assert (g2.obs["patient"] == "G").all()


def test_section_without_image(her2st_labelled):
    sd = her2st_labelled["B1"]
    assert len(sd.images) == 0 and list(sd.shapes) == ["B1"]
    meta = sd.tables["table"].uns["hist_sd"]
    assert meta["image_key"] == "" and meta["mpp"] == pytest.approx(0.69, abs=0.01)  # from the spot grid


def test_read_labels_partial(data_dir: Path, tmp_path: Path):
    src = data_dir / "her2st" / "data" / "ST-pat" / "lbl" / "B1_labeled_coordinates.tsv"
    lbl = pd.read_csv(src, sep="\t")
    lbl.iloc[:10].to_csv(tmp_path / "l.tsv", sep="\t", index=False)
    ids = [f"{round(x)}x{round(y)}" for x, y in zip(lbl["x"], lbl["y"], strict=True)]
    obs_names = pd.Index([*ids[:12], "99x99"])
    labels = read_labels(tmp_path / "l.tsv", obs_names)
    assert list(pd.isna(labels)) == [False] * 10 + [True] * 3
    assert list(labels[:10]) == list(lbl["label"].iloc[:10])


def test_bad_sections(data_dir: Path):
    with pytest.raises(ValueError, match="unknown her2st section.*A1.*valid names are B1, B2"):
        hs.datasets.her2st(["B1", "A1"], data_dir=data_dir)
    with pytest.raises(ValueError, match="empty"):
        hs.datasets.her2st([], data_dir=data_dir)
    with pytest.raises(ValueError, match=r"have no H&E image.*B4, C2, C3, C4, C5, C6"):
        hs.datasets.her2st(["B1"], data_dir=data_dir, images_only=True)


def test_bad_mirror(data_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        hs.datasets.her2st("B1", data_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no 'her2st' folder"):
        hs.datasets.her2st("B1", data_dir=tmp_path)
    mirror = tmp_path / "her2st" / "data"
    (mirror / "ST-cnts").mkdir(parents=True)
    shutil.copy(data_dir / "her2st" / "data" / "ST-cnts" / "B1.tsv.gz", mirror / "ST-cnts")
    with pytest.raises(FileNotFoundError, match="B1_selection.tsv"):
        hs.datasets.her2st("B1", data_dir=tmp_path)


def test_env_mirror_and_her2st_folder(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HIST_SD_DATA_DIR", str(data_dir))
    a = hs.datasets.her2st("C1", labels=False)["C1"].tables["table"]
    assert "label" not in a.obs and a.n_obs == 176
    # data_dir may also point at the her2st folder itself
    b = hs.datasets.her2st("C1", data_dir=data_dir / "her2st")["C1"].tables["table"]
    assert b.obs["label"].notna().sum() == 176 and (b.X != a.X).nnz == 0


def test_images_only_selects_the_six_imaged_sections(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import hist_sd.datasets._her2st as mod

    seen: dict[str, Path | None] = {}

    def fake_read_st(counts, spots, image, *, section, patient, scale_factors):
        seen[section] = image
        return section

    monkeypatch.setattr(mod, "read_st", fake_read_st)
    out = hs.datasets.her2st(data_dir=data_dir, images_only=True)
    assert list(out) == ["B4", "C2", "C3", "C4", "C5", "C6"]
    assert all(p is not None and p.is_file() for p in seen.values())
    assert seen["C3"].name == "5714_HE_BT_D1.jpg"  # C3..C6 images are named after the slide, not the section
    assert len(hs.datasets.her2st(data_dir=data_dir, labels=False)) == 30
    assert seen["B1"] is None
