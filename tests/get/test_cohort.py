"""hs.get accessors of a survival cohort (bags, survival, genomics, families) on TCGA-BLCA."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs


def test_bags(blca):
    bags = hs.get.bags(blca)
    assert len(bags) == blca.n_patients and all(b.dtype == np.float32 and b.shape[1] == 192 for b in bags)
    assert [len(b) for b in bags] == blca.patients.obs["n_instances"].tolist()
    np.testing.assert_array_equal(np.concatenate(bags), blca.instances.X)
    cases = list(blca.patients.obs_names[[5, 0]])
    picked = hs.get.bags(blca, cases)
    np.testing.assert_array_equal(picked[0], bags[5])
    np.testing.assert_array_equal(picked[1], bags[0])
    with pytest.raises(TypeError, match="hist_sd.io.Cohort"):
        hs.get.bags(blca.patients)


def test_survival(blca, data_dir: Path):
    surv = hs.get.survival(blca)
    assert list(surv.columns) == ["time", "event"] and list(surv.index) == list(blca.patients.obs_names)
    assert surv["time"].dtype == np.float64 and surv["event"].dtype == bool
    table = pd.read_csv(data_dir / "tcga" / "mcat_sig" / "tcga_blca_all_clean.csv.zip",
                        usecols=["case_id", "survival_months", "censorship"]).drop_duplicates("case_id")
    table = table.set_index("case_id").loc[surv.index]
    np.testing.assert_array_equal(surv["time"], table["survival_months"])
    np.testing.assert_array_equal(surv["event"], table["censorship"] == 0)


def test_genomics_and_families(blca, data_dir: Path):
    all_g = hs.get.genomics(blca)
    assert all_g.shape == (blca.n_patients, blca.patients.n_vars) and (all_g.dtypes == np.float32).all()
    cnv = hs.get.genomics(blca, omic="cnv")
    assert cnv.shape[1] == 248 and all(c.endswith("_cnv") for c in cnv.columns)
    onc = hs.get.genomics(blca, family="Oncogenes")
    sig = pd.read_csv(data_dir / "tcga" / "signatures.csv")
    genes = set(sig["Oncogenes"].dropna())
    expected = [c for c in blca.patients.var_names if c.rsplit("_", 1)[0] in genes]
    assert list(onc.columns) == expected and "ABL1_rnaseq" in onc.columns
    pd.testing.assert_frame_equal(onc, all_g[expected])
    both = hs.get.genomics(blca, family=["Oncogenes", "Protein Kinases"], omic="cnv")
    assert all(c.endswith("_cnv") for c in both.columns) and set(onc.columns) & set(both.columns)
    assert hs.get.genomics(blca, omic="mut").shape == (blca.n_patients, 0)  # MCAT has no mutation columns
    with pytest.raises(ValueError, match="unknown family.*Oncogene"):
        hs.get.genomics(blca, family="Oncogene")
    with pytest.raises(ValueError, match="unknown omic"):
        hs.get.genomics(blca, omic="rna")

    fams = hs.get.families(blca)
    assert list(fams) == list(sig.columns)
    assert fams["Oncogenes"] == expected
    assert "TP53_rnaseq" in fams["Tumor Suppressor Genes"] and "TP53_rnaseq" in fams["Transcription Factors"]
    assert sum(map(len, fams.values())) == int(blca.patients.varm["families"].to_numpy().sum())


def test_docstring_examples_run(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import hist_sd.get._cohort as mod

    monkeypatch.setenv("HIST_SD_DATA_DIR", str(data_dir))
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0
