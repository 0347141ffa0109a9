"""hs.io.Cohort, read_cohort and read_slide_features on real HIPT features rewritten as small CLAM-style files."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest

import hist_sd as hs

GENOMIC = ["TP53_rnaseq", "ABL1_rnaseq", "AAK1_rnaseq", "MCL1_cnv", "TP53_mut"]


def _tensor(path: Path) -> np.ndarray:
    import torch

    return torch.load(path, weights_only=True).numpy()


@pytest.fixture(scope="module")
def blca_rows(data_dir: Path) -> pd.DataFrame:
    """Real BLCA table rows: four patients, one of them with two slides."""
    df = pd.read_csv(data_dir / "tcga" / "porpoise_mutsig" / "tcga_blca_all_clean.csv.zip", low_memory=False)
    multi = df["case_id"][df["case_id"].duplicated()].iloc[0]
    singles = df["case_id"].drop_duplicates()
    singles = singles[~singles.isin([multi])].iloc[:3].tolist()
    return df[df["case_id"].isin([multi, *singles])].reset_index(drop=True)


@pytest.fixture
def small(tmp_path: Path, blca_rows: pd.DataFrame, data_dir: Path):
    """A features folder of .h5 files with coords (one patient's only slide has none), a CSV table, 2 splits."""
    feats = tmp_path / "features"
    feats.mkdir()
    cases = list(dict.fromkeys(blca_rows["case_id"]))
    multi = blca_rows["case_id"][blca_rows["case_id"].duplicated()].iloc[0]
    no_file_case = [c for c in cases if c != multi][-1]
    kept = [c for c in cases if c != no_file_case]
    written = {}
    for case, slide in zip(blca_rows["case_id"], blca_rows["slide_id"].str.replace(".svs", ""), strict=True):
        if case == no_file_case:
            continue
        x = _tensor(data_dir / "tcga" / "hipt_features" / "blca" / f"{slide}.pt")
        xy = np.column_stack([np.arange(len(x)) * 4096, np.zeros(len(x))]).astype(np.int64)
        with h5py.File(feats / f"{slide}.h5", "w") as f:
            f["features"] = x[None]  # TRIDENT / CLAM write [1, M, D] too
            f["coords"] = xy
        written[slide] = (x, xy)
    table = blca_rows[["Unnamed: 0", "case_id", "slide_id", "age", "site", "survival_months", "censorship",
                       "oncotree_code", "train", *GENOMIC]].copy()
    table["slide_id"] = [s if i % 2 else s.replace(".svs", "") for i, s in enumerate(table["slide_id"])]
    table["EGFR_cnv"] = np.where(table["case_id"] == kept[0], np.nan, 1.0)  # NaN for a kept patient: dropped
    extra = table.iloc[[0]].assign(case_id="TCGA-XX-0000", slide_id="bad", survival_months=np.nan)
    with h5py.File(feats / "bad.h5", "w") as f:
        f["features"] = next(iter(written.values()))[0][:3]
    table = pd.concat([table, extra], ignore_index=True)
    table.to_csv(tmp_path / "table.csv", index=False)
    splits = tmp_path / "splits"
    splits.mkdir()
    pd.DataFrame({"train": [kept[0], kept[1], "TCGA-ZZ-9999"], "val": [kept[2], np.nan, np.nan]}).to_csv(
        splits / "splits_0.csv")
    pd.DataFrame({"train": [kept[1], kept[2]], "val": [kept[0], np.nan]}).to_csv(splits / "splits_1.csv")
    return {"features": feats, "table": tmp_path / "table.csv", "splits": splits, "written": written,
            "multi": multi, "kept": kept}


def test_read_cohort_small_h5(small, data_dir: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="hist_sd"):
        c = hs.io.read_cohort(small["features"], small["table"], splits=small["splits"],
                              signatures=data_dir / "tcga" / "signatures.csv")
    assert c.name == "table" and list(c.patients.obs_names) == small["kept"]
    assert c.n_patients == 3 and c.n_features == 192 and c.n_folds == 2
    dropped = c.patients.uns["hist_sd"]["dropped"]
    assert dropped == {"slides_without_features": 1, "patients_without_features": 1, "patients_invalid_survival": 1,
                       "genomic_columns_with_nan": 1, "split_cases_not_in_cohort": 1}
    msgs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(msgs) == 5 and any("1 slide(s) of the table without a feature file" in m for m in msgs)
    # bags: the patient's slides concatenated in table order; coords kept
    rows = pd.read_csv(small["table"])
    for case, bag in zip(c.patients.obs_names, c.bags(), strict=True):
        slides = [s.replace(".svs", "") for s in rows.loc[rows["case_id"] == case, "slide_id"]]
        np.testing.assert_array_equal(bag, np.concatenate([small["written"][s][0] for s in slides]))
        assert bag.dtype == np.float32
    assert c.patients.obs.loc[small["multi"], "n_slides"] == 2
    xy = np.concatenate([small["written"][s][1] for s in c.instances.obs["slide_id"].cat.categories])
    np.testing.assert_array_equal(c.instances.obsm["spatial"], xy)
    # patient table: survival, clinical, genomics
    obs = c.patients.obs
    assert obs["survival_months"].dtype == np.float64 and obs["event"].dtype == bool
    assert obs["censorship"].dtype == np.int64 and ((1 - obs["censorship"]) == obs["event"]).all()
    assert {"age", "site", "oncotree_code"} <= set(obs.columns) and "train" not in obs and "Unnamed: 0" not in obs
    assert isinstance(obs["site"].dtype, pd.CategoricalDtype)
    assert list(c.patients.var_names) == GENOMIC and c.patients.X.dtype == np.float32
    first = rows.drop_duplicates("case_id").set_index("case_id").loc[small["kept"]]
    np.testing.assert_allclose(c.patients.X, first[GENOMIC].to_numpy(np.float32))
    var = c.patients.var
    assert list(var["gene"]) == ["TP53", "ABL1", "AAK1", "MCL1", "TP53"]
    assert list(var["omic"]) == ["rnaseq", "rnaseq", "rnaseq", "cnv", "mut"]
    assert var.loc["TP53_rnaseq", "family"] == "Tumor Suppressor Genes"
    fam = c.patients.varm["families"]
    assert fam.loc["ABL1_rnaseq", ["Oncogenes", "Protein Kinases"]].all()  # a gene in two families
    assert c.patients.uns["hist_sd"]["genomics_source"] == "table.csv"
    # folds: val = test; cases of the cohort missing from a file are ""
    k = small["kept"]
    assert list(c.fold(0)[0]) == [k[0], k[1]] and list(c.fold(0)[1]) == [k[2]]
    assert list(c.splits["fold_1"]) == ["test", "train", "train"]
    assert "3 patients" in repr(c) and "'spatial'" in repr(c)


def test_read_slide_features_formats(tmp_path: Path, data_dir: Path):
    import torch

    pt = sorted((data_dir / "tcga" / "hipt_features" / "blca").glob("*.pt"))[0]
    x, xy = hs.io.read_slide_features(pt)
    assert xy is None and x.dtype == np.float32 and x.shape[1] == 192
    np.testing.assert_array_equal(x, _tensor(pt))
    coords = torch.arange(2 * len(x)).reshape(-1, 2)
    torch.save({"features": torch.from_numpy(x).double(), "coords": coords}, tmp_path / "d.pt")
    x2, xy2 = hs.io.read_slide_features(tmp_path / "d.pt")
    assert x2.dtype == np.float32 and np.array_equal(x2, x) and np.array_equal(xy2, coords.numpy())


@pytest.mark.parametrize(
    ("features", "match"),
    [
        (np.ones(5, np.float32), r"shape \[M, D\]"),
        (np.ones((0, 8), np.float32), "empty"),
        (np.array([[1.0, np.nan]], np.float32), "NaN"),
        (np.ones((2, 3), np.int64), "floats"),
    ],
)
def test_read_slide_features_bad_content(tmp_path: Path, features, match):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["features"] = features
    with pytest.raises(ValueError, match=match):
        hs.io.read_slide_features(tmp_path / "s.h5")


def test_read_slide_features_bad_files(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hs.io.read_slide_features(tmp_path / "nope.pt")
    (tmp_path / "s.npy").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown suffix"):
        hs.io.read_slide_features(tmp_path / "s.npy")
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["features"] = np.ones((3, 4), np.float32)
        f["coords"] = np.ones((2, 2))
    with pytest.raises(ValueError, match=r"coords must have shape \[3, 2\]"):
        hs.io.read_slide_features(tmp_path / "c.h5")
    with h5py.File(tmp_path / "n.h5", "w") as f:
        f["feats"] = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="no 'features' dataset"):
        hs.io.read_slide_features(tmp_path / "n.h5")


def test_read_cohort_errors(small, tmp_path: Path):
    other = sorted(small["features"].glob("*.h5"))[1]
    with h5py.File(other, "w") as f:
        f["features"] = np.ones((4, 10), np.float32)
    with pytest.raises(ValueError, match=rf"{other.name}.* has 10 features per instance"):
        hs.io.read_cohort(small["features"], small["table"])
    with pytest.raises(FileNotFoundError, match="not a folder of per-slide"):
        hs.io.read_cohort(tmp_path / "missing", small["table"])
    with pytest.raises(FileNotFoundError, match="`table`"):
        hs.io.read_cohort(small["features"], tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="no 'OS' column.*time_key"):
        hs.io.read_cohort(small["features"], small["table"], time_key="OS")
    with pytest.raises(FileNotFoundError, match="splits"):
        hs.io.read_cohort(small["features"], small["table"], splits=tmp_path / "features")


def test_read_cohort_empty_slide_file(small):
    victim = sorted(small["features"].glob("TCGA*.h5"))[0]
    with h5py.File(victim, "w") as f:
        f["features"] = np.zeros((0, 192), np.float32)
    with pytest.raises(ValueError, match=rf"{victim.name}.*empty"):
        hs.io.read_cohort(small["features"], small["table"])


# ----- Cohort built directly -----
def _toy(n_inst=(2, 3, 1), order=None, d=4):
    cases = [f"c{i}" for i in range(len(n_inst))]
    p = ad.AnnData(
        np.arange(len(cases) * 2, dtype=np.float32).reshape(-1, 2),
        obs=pd.DataFrame({"survival_months": np.arange(1.0, len(cases) + 1), "censorship": [0, 1, 0][: len(cases)]},
                         index=cases),
        var=pd.DataFrame(index=["TP53_rnaseq", "KRAS_mut"]),
    )
    case_of = np.repeat(cases, n_inst)
    x = np.arange(len(case_of) * d, dtype=np.float64).reshape(-1, d)
    if order is not None:
        case_of, x = case_of[order], x[order]
    i = ad.AnnData(x, obs=pd.DataFrame({"case_id": case_of, "slide_id": [f"s_{c}" for c in case_of]},
                                       index=[f"r{j}" for j in range(len(case_of))]))
    return p, i


def test_cohort_direct_and_reordered():
    p, i = _toy()
    c = hs.io.Cohort(p, i, name="toy")
    assert [b.shape[0] for b in c.bags()] == [2, 3, 1] and c.instances.X.dtype == np.float32
    assert list(c.patients.var["omic"]) == ["rnaseq", "mut"] and list(c.patients.var["family"]) == ["none"] * 2
    assert c.patients.obs["event"].tolist() == [True, False, True] and c.n_folds == 0
    p2, i2 = _toy(order=[5, 0, 2, 1, 3, 4])  # interleaved rows are grouped, stably, in patients order
    c2 = hs.io.Cohort(p2, i2)
    for a, b in zip(c.bags(), c2.bags(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert i2.obs["case_id"].tolist()[0] == "c2"  # the input is not modified
    np.testing.assert_array_equal(c.bags(["c2", "c0"])[1], c.bags()[0])
    with pytest.raises(ValueError, match="not in cohort 'toy': nope"):
        c.bags(["nope"])
    with pytest.raises(ValueError, match="no cross-validation splits"):
        c.fold(0)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda p, i: (p, i[i.obs["case_id"] != "c2"].copy()), "a bag with no instances: patient.*c2"),
        (lambda p, i: (p[["c0", "c1"]].copy(), i), "not patients: c2"),
        (lambda p, i: (ad.AnnData(obs=p.obs.drop(columns="survival_months")), i), "'survival_months'"),
        (lambda p, i: (ad.AnnData(obs=p.obs.assign(censorship=[0, 2, 1])), i), "0 or 1.*c1"),
        (lambda p, i: (ad.AnnData(obs=p.obs.assign(survival_months=[1.0, -1, 2])), i), ">= 0.*c1"),
        (lambda p, i: (ad.AnnData(obs=p.obs.assign(event=[1, 1, 1])), i), "disagree for case.*c1"),
        (lambda p, i: (p, ad.AnnData(i.X.astype(int), obs=i.obs)), "2-D float"),
    ],
)
def test_cohort_validation(change, match):
    p, i = change(*_toy())
    with pytest.raises(ValueError, match=match):
        hs.io.Cohort(p, i)


def test_cohort_subset_splits_and_round_trip(tmp_path: Path):
    p, i = _toy()
    i.obsm["spatial"] = np.arange(12.0).reshape(6, 2)
    splits = pd.DataFrame({"fold_0": ["train", "test"], "fold_1": ["test", "train"]}, index=["c0", "c2"])
    p.obsm["risk"] = np.arange(6.0).reshape(3, 2)  # other annotations of the tables are kept
    i.layers["raw"] = i.X * 2
    c = hs.io.Cohort(p, i, splits=splits, name="toy")
    assert list(c.splits["fold_0"]) == ["train", "", "test"]
    tr, te = c.fold(1)
    assert list(tr) == ["c2"] and list(te) == ["c0"]
    for bad in (2, -1, 1.0, True):
        with pytest.raises(ValueError, match="0..1"):
            c.fold(bad)
    with pytest.raises(ValueError, match="'train', 'test' or ''"):
        hs.io.Cohort(p, i, splits=splits.replace("test", "val"))
    with pytest.raises(ValueError, match="not patients of the cohort"):
        hs.io.Cohort(p, i, splits=pd.DataFrame({"fold_0": ["train"]}, index=["zz"]))
    s = c.subset(["c2", "c0"])
    assert list(s.patients.obs_names) == ["c2", "c0"] and s.n_instances == 3
    np.testing.assert_array_equal(s.bags()[1], c.bags(["c0"])[0])
    np.testing.assert_array_equal(s.instances.obsm["spatial"], i.obsm["spatial"][[5, 0, 1]])
    assert list(s.splits["fold_0"]) == ["test", "train"]
    np.testing.assert_array_equal(s.patients.obsm["risk"], [[4.0, 5.0], [0.0, 1.0]])
    np.testing.assert_array_equal(s.instances.layers["raw"], 2 * s.instances.X)
    with pytest.raises(ValueError, match="more than once"):
        c.subset(["c0", "c0"])

    c.write(tmp_path / "toy")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        c.write(tmp_path / "toy")
    s.write(tmp_path / "toy", overwrite=True)
    back = hs.io.Cohort.read(tmp_path / "toy")
    assert back.name == "toy" and list(back.patients.obs_names) == ["c2", "c0"]
    pd.testing.assert_frame_equal(back.splits, s.splits)
    np.testing.assert_array_equal(back.patients.obsm["risk"], s.patients.obsm["risk"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        hs.io.Cohort.read(tmp_path / "nothing")


def test_round_trip_small_real(small, data_dir: Path, tmp_path: Path):
    c = hs.io.read_cohort(small["features"], small["table"], splits=small["splits"],
                          signatures=data_dir / "tcga" / "signatures.csv", name="small")
    c.write(tmp_path / "small.cohort")
    assert sorted(p.name for p in (tmp_path / "small.cohort").iterdir()) == [
        "instances.h5ad", "patients.h5ad", "splits.csv"]
    back = hs.io.Cohort.read(tmp_path / "small.cohort")
    assert back.name == "small" and back.n_folds == 2 and c.patients.obs.index.name is None
    pd.testing.assert_frame_equal(back.patients.obs, c.patients.obs)
    pd.testing.assert_frame_equal(back.patients.var, c.patients.var)
    pd.testing.assert_frame_equal(back.patients.varm["families"], c.patients.varm["families"])
    pd.testing.assert_frame_equal(back.instances.obs, c.instances.obs)
    pd.testing.assert_frame_equal(back.splits, c.splits)
    np.testing.assert_array_equal(back.patients.X, c.patients.X)
    np.testing.assert_array_equal(back.instances.X, c.instances.X)
    np.testing.assert_array_equal(back.instances.obsm["spatial"], c.instances.obsm["spatial"])
    assert back.patients.uns["hist_sd"] == c.patients.uns["hist_sd"]


def test_docstring_examples_run():
    import hist_sd.io._cohort as mod

    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


def test_read_cohort_slides_of_a_case_disagree(small, caplog: pytest.LogCaptureFixture):
    table = pd.read_csv(small["table"])
    second = np.flatnonzero(table["case_id"] == small["multi"])[1]
    changed = table.copy()
    changed.loc[second, "TP53_rnaseq"] += 1.0
    changed.to_csv(small["table"], index=False)
    with caplog.at_level(logging.WARNING, logger="hist_sd"):
        c = hs.io.read_cohort(small["features"], small["table"], progress=True)
    assert any("different genomic values" in r.getMessage() and small["multi"] in r.getMessage()
               for r in caplog.records)
    first = table.loc[np.flatnonzero(table["case_id"] == small["multi"])[0], "TP53_rnaseq"]
    assert c.patients[small["multi"], "TP53_rnaseq"].X[0, 0] == np.float32(first)  # the first slide's row wins
    changed.loc[second, "survival_months"] += 1.0
    changed.to_csv(small["table"], index=False)
    with pytest.raises(ValueError, match=f"slides of case.*{small['multi']}.*disagree"):
        hs.io.read_cohort(small["features"], small["table"])


def test_read_cohort_no_matching_files(small, tmp_path: Path):
    empty = tmp_path / "other"
    empty.mkdir()
    with h5py.File(empty / "slide-x.h5", "w") as f:
        f["features"] = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="no patient is left.*files like 'slide-x'"):
        hs.io.read_cohort(empty, small["table"])
