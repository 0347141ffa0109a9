"""In-fold fitting: the ridge baseline's settings are parameters, not constants."""

from __future__ import annotations

import pytest

import hist_sd as hs


def test_ridge_honours_alphas_and_pca(sections, genes):
    train = [sections["A1"], sections["B1"]]
    one = hs.tl.train(train, genes=genes, method="ridge", ridge_alphas=[7.0], progress=False)
    assert one.params["ridge_alpha"] == 7.0
    default = hs.tl.train(train, genes=genes, method="ridge", progress=False)
    assert default.params["pca_components"] == 8 and default.params["pca"] == 256  # 8-d features: all kept
    five = hs.tl.train(train, genes=genes, method="ridge", pca=5, progress=False)
    assert five.params["pca_components"] == 5 and five.params["pca"] == 5
    plain = hs.tl.train(train, genes=genes, method="ridge", pca=None, progress=False)
    assert plain.params["pca_components"] == 8 and plain.params["pca"] is None
    assert not (five.net.linear.weight == default.net.linear.weight).all()
    for bad in ([], [-1.0], [float("nan")]):
        with pytest.raises(ValueError, match="ridge_alphas"):
            hs.tl.train(train, genes=genes, method="ridge", ridge_alphas=bad, progress=False)
    with pytest.raises(ValueError, match="pca"):
        hs.tl.train(train, genes=genes, method="ridge", pca=0, progress=False)


def test_neural_pca_default_comes_from_the_method(sections, genes):
    mlp = hs.tl.train(sections["A1"], genes=genes, method="mlp", epochs=1, progress=False)
    assert mlp.params["pca"] == hs.model.METHODS["mlp"].pca == 32 and mlp.projection.shape == (8, 8)
