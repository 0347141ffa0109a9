"""What `.X` holds is detected, and training refuses what cannot be decided (no silent rescaling)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

import hist_sd as hs
from hist_sd._core._expr import classify, training_expression


def test_classify_kinds():
    counts = np.array([[0, 3], [5, 1]], dtype=np.float32)
    assert classify(counts) == "counts" and classify(sparse.csr_matrix(counts)) == "counts"
    logged = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    assert classify(logged) == "non-negative" and classify(logged, {"log1p": {"base": None}}) == "log1p"
    assert classify(logged - 1) == "real"
    assert classify(np.array([[np.nan, 1.0]])) == "non-finite" and classify(np.array([[-1.0, 2.0]])) == "real"


def test_training_refuses_undecidable_or_broken_expression(sections, genes):
    base = sections["A1"]
    cp10k = base.copy()
    x = cp10k.X.toarray()
    cp10k.X = sparse.csr_matrix(x / x.sum(1, keepdims=True) * 1e4)
    with pytest.raises(ValueError, match=r"`X` holds non-integer values without scanpy's uns\['log1p'\]"):
        hs.tl.train(cp10k, genes=genes, method="ridge", progress=False)
    logged = cp10k.copy()
    logged.X = logged.X.log1p()
    logged.uns["log1p"] = {"base": None}  # marked: used as it is
    np.testing.assert_allclose(training_expression(logged, genes), training_expression(base, genes), rtol=1e-5)
    for bad, what in ((-1.0, "negative values"), (np.nan, "NaN or infinite values")):
        broken = base.copy()
        x = broken.X.toarray()
        x[0, 0] = bad
        broken.X = sparse.csr_matrix(x)
        with pytest.raises(ValueError, match=what):
            hs.tl.train(broken, genes=genes, method="ridge", progress=False)
        layered = base.copy()
        layered.layers["counts"] = broken.X.copy()
        with pytest.raises(ValueError, match=r"`layers\['counts'\]` must hold raw counts"):
            hs.tl.train(layered, genes=genes, method="ridge", progress=False)


def test_evaluate_warns_when_the_scale_cannot_be_told(sections, genes):
    ad = sections["A1"].copy()
    x = ad.X.toarray()
    ad.X = sparse.csr_matrix(x / x.sum(1, keepdims=True) * 1e4)  # CP10k, unmarked
    ad.obsm["hist_pred"] = np.log1p(ad.X[:, :3].toarray())
    ad.uns["hist_pred"] = {"genes": genes[:3]}
    with pytest.warns(hs.ExpressionScaleWarning, match="scored as it is"):
        hs.tl.evaluate(ad)
    ad.uns["log1p"] = {"base": None}
    hs.tl.evaluate(ad)  # marked log1p: no warning (pytest turns warnings into errors)


def test_duplicated_genes_are_refused(sections, genes):
    with pytest.raises(ValueError, match="more than once: G1"):
        hs.tl.train(sections["A1"], genes=[*genes, "G1"], method="ridge", progress=False)
