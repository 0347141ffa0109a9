"""hs.datasets.tcga on the real HIPT features and MCAT / PORPOISE tables of the data mirror."""

from __future__ import annotations

import doctest
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd.datasets._tcga import TCGA_COHORTS


@pytest.fixture(scope="module")
def blca_table(data_dir: Path) -> pd.DataFrame:
    return pd.read_csv(data_dir / "tcga" / "mcat_sig" / "tcga_blca_all_clean.csv.zip", low_memory=False)


def _pt(data_dir: Path, cohort: str, slide: str) -> np.ndarray:
    import torch

    return torch.load(data_dir / "tcga" / "hipt_features" / cohort / f"{slide}.pt", weights_only=True).numpy()


def test_blca_patients_and_instances(blca, blca_table: pd.DataFrame, data_dir: Path):
    files = {p.stem for p in (data_dir / "tcga" / "hipt_features" / "blca").glob("*.pt")}
    slide = blca_table["slide_id"].str.replace(".svs", "")
    with_features = pd.unique(blca_table.loc[slide.isin(files), "case_id"])
    assert blca_table["case_id"].nunique() == 373 and blca.n_patients == len(with_features) == 371
    assert list(blca.patients.obs_names) == list(with_features)
    assert blca.n_features == 192 and blca.name == "tcga_blca"
    assert blca.n_instances == sum(len(_pt(data_dir, "blca", s)) for s in slide[slide.isin(files)]) == 20693
    assert blca.patients.obs["n_instances"].sum() == blca.n_instances
    meta = blca.patients.uns["hist_sd"]
    assert meta["genomics_source"] == "mcat" and meta["table"] == "mcat_sig/tcga_blca_all_clean.csv.zip"
    assert meta["dropped"]["slides_without_features"] == (~slide.isin(files)).sum() == 3
    assert meta["dropped"]["patients_without_features"] == 2
    assert "obsm" not in repr(blca) and "spatial" not in blca.instances.obsm  # HIPT files carry no coords
    # survival: the table's, per case; event = 1 - censorship
    first = blca_table.drop_duplicates("case_id").set_index("case_id").loc[blca.patients.obs_names]
    np.testing.assert_array_equal(blca.patients.obs["survival_months"], first["survival_months"])
    np.testing.assert_array_equal(blca.patients.obs["event"], first["censorship"] == 0)
    surv = hs.get.survival(blca)
    assert list(surv.columns) == ["time", "event"] and surv["event"].sum() == 169
    # genomics: MCAT rnaseq + cnv columns, as in the table
    assert set(blca.patients.var["omic"]) == {"rnaseq", "cnv"}
    np.testing.assert_allclose(blca.patients.X, first[blca.patients.var_names].to_numpy(np.float32))
    assert blca.load_s < 20  # ~1.5 s on an idle core: a few seconds, not minutes


def test_blca_multi_slide_bag(blca, blca_table: pd.DataFrame, data_dir: Path):
    two = blca.patients.obs_names[blca.patients.obs["n_slides"] == 2]
    assert len(two) >= 10
    case = two[0]
    slides = blca_table.loc[blca_table["case_id"] == case, "slide_id"].str.replace(".svs", "").tolist()
    assert len(slides) == 2
    expected = np.concatenate([_pt(data_dir, "blca", s) for s in slides])
    (bag,) = blca.bags([case])
    np.testing.assert_array_equal(bag, expected)
    assert bag.dtype == np.float32 and blca.patients.obs.loc[case, "n_instances"] == len(expected)
    rows = blca.instances.obs["case_id"] == case
    assert list(pd.unique(blca.instances.obs.loc[rows, "slide_id"])) == slides


def test_blca_folds(blca, data_dir: Path):
    assert blca.n_folds == 5
    all_cases = set(blca.patients.obs_names)
    tests = []
    for k in range(5):
        train, test = blca.fold(k)
        assert not set(train) & set(test)
        assert set(train) | set(test) == all_cases
        file = pd.read_csv(data_dir / "tcga" / "splits" / "porpoise" / "5foldcv" / "tcga_blca" / f"splits_{k}.csv")
        assert set(test) == set(file["val"].dropna()) & all_cases
        tests.append(set(test))
    assert set().union(*tests) == all_cases and sum(map(len, tests)) == len(all_cases)  # each case tested once


def test_blca_families(blca, data_dir: Path):
    sig = pd.read_csv(data_dir / "tcga" / "signatures.csv")
    assert blca.patients.uns["hist_sd"]["families"] == list(sig.columns)
    fam = blca.patients.varm["families"]
    assert list(fam.columns) == list(sig.columns) and fam.dtypes.eq(bool).all()
    assert fam.loc["TP53_rnaseq", ["Tumor Suppressor Genes", "Transcription Factors"]].all()
    assert blca.patients.var.loc["TP53_rnaseq", "family"] == "Tumor Suppressor Genes"
    for f in sig.columns:
        genes = set(sig[f].dropna())
        assert set(blca.patients.var["gene"][fam[f]]) <= genes
        assert (blca.patients.var["gene"].isin(genes) == fam[f]).all()
    assert (blca.patients.var["family"] == "none").sum() == (~fam.any(axis=1)).sum()


def test_ucec_uses_mcat_cnv(data_dir: Path):
    ucec = hs.datasets.tcga("UCEC", data_dir=data_dir)
    assert ucec.name == "tcga_ucec" and ucec.patients.uns["hist_sd"]["genomics_source"] == "mcat"
    assert set(ucec.patients.var["omic"]) == {"cnv"} and ucec.patients.n_vars == 123
    assert ucec.n_folds == 5 and ucec.n_features == 192 and ucec.n_patients == 478


def test_features_folder_and_porpoise(data_dir: Path, tmp_path: Path):
    src = data_dir / "tcga" / "hipt_features" / "luad"
    for p in sorted(src.glob("*.pt"))[:12]:
        shutil.copy(p, tmp_path / p.name)
    luad = hs.datasets.tcga("luad", features=tmp_path, genomics="porpoise", data_dir=data_dir)
    assert luad.patients.uns["hist_sd"]["genomics_source"] == "porpoise"
    assert luad.patients.uns["hist_sd"]["features"] == str(tmp_path)
    assert set(luad.patients.var["omic"]) == {"rnaseq", "cnv", "mut"}
    assert 1 <= luad.n_patients <= 12 and luad.instances.obs["slide_id"].nunique() == 12


def test_errors(data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match=", ".join(TCGA_COHORTS)):
        hs.datasets.tcga("lusc", data_dir=data_dir)
    with pytest.raises(ValueError, match="MCAT signature table exists for blca, luad, ucec only"):
        hs.datasets.tcga("brca", genomics="mcat", data_dir=data_dir)
    with pytest.raises(ValueError, match="`genomics`"):
        hs.datasets.tcga("brca", genomics="rna", data_dir=data_dir)
    with pytest.raises(ValueError, match="`features`"):
        hs.datasets.tcga("brca", features="uni", data_dir=data_dir)
    # no data folder: say it cannot be downloaded and where it goes
    with pytest.raises(FileNotFoundError, match=r"cannot be downloaded.*hipt_features.*HIST_SD_DATA_DIR"):
        hs.datasets.tcga("Blca", data_dir=tmp_path)
    monkeypatch.delenv("HIST_SD_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="No local data folder is set"):
        hs.datasets.tcga("blca")
    (tmp_path / "tcga").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks the HIPT features of 'blca'.*hipt_features"):
        hs.datasets.tcga("blca", data_dir=tmp_path)


def test_docstring_example_runs(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import hist_sd.datasets._tcga as mod

    monkeypatch.setenv("HIST_SD_DATA_DIR", str(data_dir))
    result = doctest.testmod(mod)
    assert result.attempted == 3 and result.failed == 0
