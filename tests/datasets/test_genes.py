from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import hist_sd as hs


@pytest.fixture(scope="module")
def hg38(data_dir: Path) -> pd.DataFrame:
    return hs.datasets.gene_positions("hg38", data_dir=data_dir)


def test_gene_positions_hg38(hg38: pd.DataFrame):
    assert len(hg38) == 33472 and hg38.index.is_unique
    assert list(hg38.columns[:5]) == ["chromosome", "start", "end", "arm", "band"]
    assert set(hg38["chromosome"]) == {f"chr{c}" for c in [*range(1, 23), "X", "Y"]}
    assert (hg38["end"] > hg38["start"]).all() and hg38["start"].dtype == np.int64
    erbb2 = hg38.loc["ERBB2"]
    assert erbb2["chromosome"] == "chr17" and erbb2["arm"] == "q" and erbb2["band"].startswith("q12")
    assert 39_600_000 < erbb2["start"] < 39_800_000  # hg38 coordinates
    assert hg38.loc["MIR1302-2HG", "gene_id"] == "ENSG00000243485"


def test_gene_positions_mm10(data_dir: Path):
    mm10 = hs.datasets.gene_positions("mm10", data_dir=data_dir)
    assert mm10.index.is_unique and len(mm10) == 32195 - 30  # 30 duplicated symbols keep their first entry
    assert mm10.loc["Xkr4", "chromosome"] == "chr1"
    with pytest.raises(ValueError, match="`genome`"):
        hs.datasets.gene_positions("hg19", data_dir=data_dir)


def _adata(genes: list[str]) -> AnnData:
    return AnnData(np.ones((3, len(genes)), np.float32), var=pd.DataFrame(index=genes))


def test_add_gene_positions(data_dir: Path, hg38: pd.DataFrame):
    a = _adata(["ERBB2", "GAPDH", "NOT_A_GENE"])
    assert hs.datasets.add_gene_positions(a, data_dir=data_dir) is None
    assert list(a.var["chromosome"].iloc[:2]) == ["chr17", "chr12"] and pd.isna(a.var["chromosome"].iloc[2])
    assert a.var.loc["GAPDH", "start"] == hg38.loc["GAPDH", "start"]
    assert np.isnan(a.var.loc["NOT_A_GENE", "end"])
    assert a.uns["gene_positions"]["params"]["genome"] == "hg38" and a.uns["gene_positions"]["n_matched"] == 2
    with pytest.raises(KeyError, match="overwrite=True"):
        hs.datasets.add_gene_positions(a, data_dir=data_dir)
    hs.datasets.add_gene_positions(a, data_dir=data_dir, overwrite=True)

    b = _adata(["g1", "g2"])
    b.var["symbol"] = ["TP53", "MYC"]
    c = hs.datasets.add_gene_positions(b, gene_symbols="symbol", data_dir=data_dir, copy=True)
    assert "chromosome" not in b.var and list(c.var["chromosome"]) == ["chr17", "chr8"]


def test_add_gene_positions_mouse_and_errors(data_dir: Path):
    m = _adata(["X0610009B22Rik", "Xkr4", "Nrf1"])  # R-mangled symbol, and a real one starting with X
    hs.datasets.add_gene_positions(m, "mm10", data_dir=data_dir)
    assert m.var["chromosome"].notna().all() and m.var.loc["Xkr4", "chromosome"] == "chr1"
    with pytest.raises(ValueError, match="None of the 2 genes"):
        hs.datasets.add_gene_positions(_adata(["ERBB2", "GAPDH"]), "mm10", data_dir=data_dir)
    with pytest.raises(KeyError, match="`gene_symbols`"):
        hs.datasets.add_gene_positions(_adata(["ERBB2"]), gene_symbols="symbol", data_dir=data_dir)
    with pytest.raises(TypeError, match="`adata`"):
        hs.datasets.add_gene_positions("ERBB2", data_dir=data_dir)


def test_infercnvpy_reads_the_positions(data_dir: Path):
    """The columns are the ones infercnvpy uses: it computes a CNV embedding on a small seeded table."""
    import infercnvpy as cnv

    pos = hs.datasets.gene_positions("hg38", data_dir=data_dir)
    genes = pos.index[pos["chromosome"] == "chr1"][:200].append(pos.index[pos["chromosome"] == "chr2"][:200])
    rng = np.random.default_rng(0)
    a = AnnData(rng.normal(size=(40, len(genes))).astype(np.float32), var=pd.DataFrame(index=genes))
    a.obs["ref"] = pd.Categorical(["normal"] * 20 + ["tumor"] * 20)
    hs.datasets.add_gene_positions(a, data_dir=data_dir)
    cnv.tl.infercnv(a, reference_key="ref", reference_cat="normal", window_size=50, step=10, n_jobs=1)
    assert a.obsm["X_cnv"].shape[0] == 40 and set(a.uns["cnv"]["chr_pos"]) == {"chr1", "chr2"}
