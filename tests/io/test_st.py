from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._core._image import get_image


def test_read_st_b4_structure(b4):
    t = b4.tables["table"]
    assert t.n_obs == 283
    assert t.n_vars > 15000
    assert sparse.issparse(t.X)
    assert float(t.X.sum()) > 0 and np.allclose(t.X.data, np.round(t.X.data))
    assert {"array_row", "array_col", "in_tissue", "section", "patient"} <= set(t.obs.columns)
    assert (t.obs["section"] == "B4").all() and (t.obs["patient"] == "B").all()
    meta = t.uns["hist_sd"]
    assert meta["mpp"] == pytest.approx(0.69, abs=0.02)
    img = get_image(b4, table=t)
    assert img.dims == ("c", "y", "x") and img.dtype == np.uint8 and img.shape[0] == 3
    pyramid = b4.images[meta["image_key"]]
    assert sorted(pyramid.children) == ["scale0", "scale1", "scale2", "scale3"]  # default scale_factors (2, 2, 2)
    assert next(iter(pyramid["scale3"].data_vars.values())).shape == (3, img.shape[1] // 8, img.shape[2] // 8)
    circles = b4.shapes[meta["shapes_key"]]
    assert np.allclose(circles["radius"], 50 / meta["mpp"])


def test_spots_land_on_tissue(b4):
    t = b4.tables["table"]
    img = get_image(b4, table=t)
    xy = np.rint(t.obsm["spatial"]).astype(int)
    under = np.asarray(img.values[:, xy[:, 1], xy[:, 0]], dtype=float).mean()
    median = np.median(np.asarray(img[:, ::8, ::8].values, dtype=float).mean(axis=0))
    assert under < median - 20  # tissue is darker than the mostly white glass


def test_read_st_crop_matches_counts(b4_crop):
    img, counts, spots = b4_crop
    sd = hs.io.read_st(counts, spots, img, section="c", scale_factors=None)
    t = sd.tables["table"]
    assert t.n_obs == len(counts) and t.n_vars == 300
    np.testing.assert_array_equal(t.X.toarray(), counts.loc[t.obs_names].to_numpy())
    assert (t.obs["patient"] == "c").all()


def test_read_st_bad_input(b4_crop, her2st_dir, tmp_path):
    img, counts, spots = b4_crop
    with pytest.raises(FileNotFoundError, match="`counts`"):
        hs.io.read_st(tmp_path / "missing.tsv.gz", spots)
    with pytest.raises(FileNotFoundError, match="`spots`"):
        hs.io.read_st(counts, tmp_path / "missing.tsv")
    with pytest.raises(FileNotFoundError, match="`image`"):
        hs.io.read_st(counts, spots, tmp_path / "missing.jpg")
    shifted = spots.assign(x=spots["x"] + 100, y=spots["y"] + 100)
    with pytest.raises(ValueError, match="no spot in common"):
        hs.io.read_st(counts, shifted)
    with pytest.raises(ValueError, match="outside the image"):
        hs.io.read_st(counts, spots, img[:300, :300])
    with pytest.raises(ValueError, match="outside the image"):
        hs.io.read_st(counts, spots, img, scale=3.0)
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.fromarray(img[..., 1]).save(gray)
    with pytest.raises(ValueError, match="mode 'L'"):
        hs.io.read_st(counts, spots, gray)
    with pytest.raises(ValueError, match="pixel_x"):
        hs.io.read_st(counts, spots.drop(columns=["pixel_x"]))


def test_read_st_float_ids(data_dir):
    """The mouse olfactory bulb layout: spot file indexed by "XxY" float ids, no `selected` column."""
    d = data_dir / "mob_stahl2016"
    sd = hs.io.read_st(d / "counts" / "Rep11.tsv.gz", d / "spots" / "Rep11.tsv", section="Rep11")
    t = sd.tables["table"]
    assert t.n_obs == 262 and t.obs_names[0] == "16.92x9.015"
    assert t.obs["array_x"].iloc[0] == pytest.approx(16.92) and t.obs["array_col"].iloc[0] == 17
    assert t.uns["hist_sd"]["mpp"] == pytest.approx(2.75, abs=0.02)
    assert (t.obs["in_tissue"] == 1).all()


def _write_tsv(df, path):
    df.to_csv(path, sep="\t")
    return path


def test_read_st_refuses_negative_or_nan_counts(b4_crop, tmp_path):
    _, counts, spots = b4_crop
    neg = counts.copy()
    neg.iloc[2, 5] = -3
    with pytest.raises(ValueError, match=r"`counts`.*neg_counts\.tsv.*negative.*1 value"):
        hs.io.read_st(_write_tsv(neg, tmp_path / "neg_counts.tsv"), spots)
    nan = counts.astype(float)
    nan.iloc[0, 0] = np.nan
    nan.iloc[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"`counts`.*nan_counts\.tsv.*NaN.*2 value"):
        hs.io.read_st(_write_tsv(nan, tmp_path / "nan_counts.tsv"), spots)
    with pytest.raises(ValueError, match=r"`counts`.*negative"):  # a DataFrame is named by the argument
        hs.io.read_st(neg, spots)


def test_read_st_duplicate_count_rows(b4_crop, tmp_path, caplog):
    _, counts, spots = b4_crop
    dup_id = counts.index[4]
    conflicting = pd.concat([counts, counts.iloc[[4]] + 1])
    with pytest.raises(ValueError, match=rf"`counts`.*conflict\.tsv.*{dup_id}"):
        hs.io.read_st(_write_tsv(conflicting, tmp_path / "conflict.tsv"), spots)
    exact = pd.concat([counts, counts.iloc[[4, 7]]])
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        sd = hs.io.read_st(_write_tsv(exact, tmp_path / "exact.tsv"), spots)
    t = sd.tables["table"]
    assert t.n_obs == len(counts) and t.obs_names.is_unique
    np.testing.assert_array_equal(t.X.toarray(), counts.loc[t.obs_names].to_numpy())
    assert any("2 duplicated" in r.getMessage() and "exact.tsv" in r.getMessage() for r in caplog.records)


def test_read_st_duplicate_spot_ids(b4_crop, tmp_path, caplog):
    _, counts, spots = b4_crop
    row = spots.iloc[[3]]
    dup_id = f"{row['x'].iloc[0]}x{row['y'].iloc[0]}"
    conflicting = pd.concat([spots, row.assign(pixel_x=row["pixel_x"] + 40)], ignore_index=True)
    path = tmp_path / "dup_spots.tsv"
    conflicting.to_csv(path, sep="\t", index=False)
    with pytest.raises(ValueError, match=rf"`spots`.*dup_spots\.tsv.*{dup_id}"):
        hs.io.read_st(counts, path)
    exact = pd.concat([spots, row], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        sd = hs.io.read_st(counts, exact)
    assert sd.tables["table"].n_obs == len(counts)
    assert any("1 duplicated" in r.getMessage() for r in caplog.records)
    # the float-id layout (spot file indexed by the ids) too
    by_id = spots.set_index(pd.Index([f"{x}x{y}" for x, y in zip(spots["x"], spots["y"], strict=True)]))
    with pytest.raises(ValueError, match=rf"`spots`.*{dup_id}"):
        hs.io.read_st(counts, pd.concat([by_id, by_id.iloc[[3]].assign(pixel_y=0.0)]))
