"""hs.datasets.gene_sets: the offline gene-set collections of the data mirror, in decoupler's layout."""

from __future__ import annotations

import pytest

import hist_sd as hs


def test_hallmarks_are_the_50_msigdb_sets(data_dir):
    net = hs.datasets.gene_sets("hallmarks", data_dir=data_dir)
    assert list(net.columns) == ["source", "target", "weight"]
    assert net["source"].nunique() == 50
    assert "HALLMARK_G2M_CHECKPOINT" in set(net["source"])
    g2m = set(net.loc[net["source"] == "HALLMARK_G2M_CHECKPOINT", "target"])
    assert {"MKI67", "TOP2A", "CCNB2"} <= g2m
    assert not net.duplicated(["source", "target"]).any() and (net["weight"] == 1).all()


def test_enrichr_libraries_and_dorothea(data_dir):
    go = hs.datasets.gene_sets("go_bp", data_dir=data_dir)
    kegg = hs.datasets.gene_sets("kegg", data_dir=data_dir)
    assert go["source"].nunique() > 5000 and kegg["source"].nunique() > 300
    assert any(s.endswith("(GO:0006103)") for s in go["source"].unique())
    strict = hs.datasets.gene_sets("dorothea", confidence=["A"], data_dir=data_dir)
    loose = hs.datasets.gene_sets("dorothea", confidence=("A", "B", "C"), data_dir=data_dir)
    assert 0 < len(strict) < len(loose)
    assert set(loose["weight"].unique()) <= {-1.0, 1.0}
    assert "TP53" in set(strict["source"])


def test_errors(data_dir, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="`source` must be one of"):
        hs.datasets.gene_sets("reactome", data_dir=data_dir)
    with pytest.raises(ValueError, match="confidence"):
        hs.datasets.gene_sets("dorothea", confidence=["Z"], data_dir=data_dir)
    (tmp_path / "gene_sets").mkdir()
    with pytest.raises(FileNotFoundError, match="has no file 'msigdb_hallmarks"):
        hs.datasets.gene_sets("hallmarks", data_dir=tmp_path)
    monkeypatch.delenv("HIST_SD_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="does not download gene sets"):
        hs.datasets.gene_sets("hallmarks")
