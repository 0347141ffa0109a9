from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData
from scipy import sparse

import hist_sd as hs


@pytest.fixture
def b4_table(b4) -> AnnData:
    t = b4.tables["table"]
    return t.copy()


def test_log1p_matches_scanpy_and_keeps_counts(b4_table: AnnData) -> None:
    ad = b4_table
    raw = ad.X.copy()
    assert hs.pp.normalize(ad) is None
    np.testing.assert_array_equal(ad.layers["counts"].toarray(), raw.toarray())
    x = raw.toarray().astype(np.float64)
    expect = np.log1p(x / x.sum(1, keepdims=True) * 1e4)
    np.testing.assert_allclose(ad.X.toarray(), expect, rtol=1e-5, atol=1e-5)
    assert ad.uns["normalize"]["params"]["method"] == "log1p"
    assert float(ad.uns["normalize"]["params"]["target_sum"]) == 1e4
    assert "log1p" in ad.uns


def test_refuses_twice_and_renormalises_from_counts(b4_table: AnnData) -> None:
    ad = b4_table
    raw = ad.X.toarray()
    hs.pp.normalize(ad)
    with pytest.raises(ValueError, match="normalised already"):
        hs.pp.normalize(ad)
    hs.pp.normalize(ad, target_sum=100, overwrite=True)
    expect = np.log1p(raw / raw.sum(1, keepdims=True) * 100)
    np.testing.assert_allclose(ad.X.toarray(), expect, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ad.layers["counts"].toarray(), raw)  # counts never lost


def test_clr_formula(b4_table: AnnData) -> None:
    ad = b4_table
    raw = ad.X.toarray().astype(np.float64)
    hs.pp.normalize(ad, method="clr")
    geo = np.exp(np.log1p(raw).sum(0) / raw.shape[0])
    np.testing.assert_allclose(ad.X.toarray(), np.log1p(raw / geo), rtol=1e-5, atol=1e-6)
    dense = AnnData(X=raw[:50, :40].copy())
    hs.pp.normalize(dense, method="clr")
    geo = np.exp(np.log1p(raw[:50, :40]).sum(0) / 50)
    np.testing.assert_allclose(dense.X, np.log1p(raw[:50, :40] / geo), rtol=1e-5, atol=1e-6)


def test_not_inplace_returns_copy(b4) -> None:
    sdata = b4
    t = sdata.tables["table"]
    before = t.X.copy()
    out = hs.pp.normalize(sdata, inplace=False)
    assert isinstance(out, AnnData) and "counts" in out.layers
    assert "counts" not in t.layers and "normalize" not in t.uns
    assert (t.X != before).nnz == 0  # the shared fixture is untouched
    assert not np.allclose(out.X[:5].toarray(), before[:5].toarray())


def test_errors() -> None:
    ad = AnnData(X=np.array([[0.5, 1.0], [2.0, 0.0]], dtype=np.float32))
    with pytest.raises(ValueError, match="raw counts"):
        hs.pp.normalize(ad)
    ad = AnnData(X=sparse.csr_matrix(np.array([[1.0, 2.0], [3.0, 0.0]], dtype=np.float32)))
    with pytest.raises(ValueError, match="LogVMR"):
        hs.pp.normalize(ad, method="logvmr")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_sum"):
        hs.pp.normalize(ad, target_sum=0)
    # counts already in a layer and X something else: the layer is the source
    ad.layers["counts"] = ad.X.copy()
    ad.X = ad.X * 0.3
    hs.pp.normalize(ad)
    np.testing.assert_allclose(ad.X.toarray()[0], np.log1p(np.array([1, 2]) / 3 * 1e4), rtol=1e-6)
