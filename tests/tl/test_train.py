from __future__ import annotations

import numpy as np
import pytest
import torch

import hist_sd as hs
from hist_sd.model._tasks import log_expression

TINY = {"preset": "tiny", "model_kwargs": {"base_width": 8}, "epochs": 150, "lr": 1e-2, "progress": False}


def _pcc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(a.shape[1])]))


@pytest.fixture
def hist_model(sections, genes):
    return hs.tl.train([sections["A1"], sections["A2"], sections["B1"]], genes=genes, **TINY)


def test_train_predict_learns_held_out(hist_model, sections, genes):
    test = sections["C1"]
    hs.tl.predict(test, hist_model)
    pred = test.obsm["hist_pred"]
    assert pred.shape == (test.n_obs, len(genes)) and pred.dtype == np.float32
    assert list(test.uns["hist_pred"]["genes"]) == genes
    assert _pcc(pred, log_expression(test, genes)) > 0.5
    assert hist_model.history[-1] < hist_model.history[0]
    with pytest.raises(KeyError, match="exists already"):
        hs.tl.predict(test, hist_model)
    hs.tl.predict(test, hist_model, overwrite=True)


def test_training_is_deterministic(sections, genes):
    kw = {**TINY, "epochs": 5}
    m1 = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, seed=3, **kw)
    m2 = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, seed=3, **kw)
    for (k, a), b in zip(m1.net.state_dict().items(), m2.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_loss_ignores_spots_outside_tissue(sections, genes):
    """Targets of out-of-tissue spots (and padding) cannot influence training."""
    a = sections["A1"].copy()
    a.obs["in_tissue"] = (np.arange(a.n_obs) % 4 != 0).astype(int)
    b = a.copy()
    x = b.X.toarray()
    off = b.obs["in_tissue"].to_numpy() == 0
    x[off] = x[off][::-1] * 7 + 3  # garbage expression where there is no tissue
    b.X = type(a.X)(x)
    kw = {**TINY, "epochs": 4}
    m1 = hs.tl.train(a, genes=genes, **kw)
    m2 = hs.tl.train(b, genes=genes, **kw)
    for t1, t2 in zip(m1.net.state_dict().values(), m2.net.state_dict().values(), strict=True):
        assert torch.equal(t1, t2)


def test_save_load_round_trip_and_mismatches(hist_model, sections, genes, tmp_path):
    path = hist_model.save(tmp_path / "m.pt")
    with pytest.raises(FileExistsError):
        hist_model.save(path)
    loaded = hs.tl.load_model(path)
    assert loaded.genes == genes and loaded.encoder == "synthetic" and loaded.feature_dim == 8
    a, b = sections["C1"].copy(), sections["C1"].copy()
    hs.tl.predict(a, hist_model)
    hs.tl.predict(b, loaded)
    np.testing.assert_array_equal(a.obsm["hist_pred"], b.obsm["hist_pred"])
    hs.tl.predict(b, str(path), key_added="from_path")
    np.testing.assert_array_equal(a.obsm["hist_pred"], b.obsm["from_path"])

    with pytest.raises(ValueError, match="mismatch"):
        hs.tl.load_model(path, genes=genes[::-1])
    with pytest.raises(ValueError, match="mismatch"):
        hs.tl.load_model(path, feature_dim=16)
    other = sections["C1"].copy()
    other.obsm["X_hist"] = np.zeros((other.n_obs, 16), np.float32)
    with pytest.raises(ValueError, match="8-d features"):
        hs.tl.predict(other, loaded)
    other = sections["C1"].copy()
    other.uns["X_hist"] = {"params": {"encoder": "ctranspath"}}
    with pytest.raises(ValueError, match="encoder"):
        hs.tl.predict(other, loaded)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a hist_sd model"):
        hs.tl.load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        hs.tl.load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("method", ["ridge", "mlp", "transformer", "gnn", "hist_noattn", "hist_noconvmixer"])
def test_every_method_trains_predicts_and_round_trips(method, sections, genes, tmp_path):
    kw = {"epochs": 15, "progress": False}
    if method.startswith("hist"):
        kw["preset"] = "tiny"
    model = hs.tl.train([sections["A1"], sections["A2"], sections["B1"]], genes=genes, method=method, **kw)
    test = sections["C1"]
    hs.tl.predict(test, model)
    pred = test.obsm["hist_pred"]
    assert pred.shape == (test.n_obs, len(genes)) and np.isfinite(pred).all()
    loaded = hs.tl.load_model(model.save(tmp_path / f"{method}.pt"))
    again = test.copy()
    hs.tl.predict(again, loaded, overwrite=True)
    np.testing.assert_allclose(again.obsm["hist_pred"], pred, rtol=1e-5, atol=1e-5)
    if method == "ridge":  # linear ground truth: ridge must nail it
        assert _pcc(pred, log_expression(test, genes)) > 0.8


def test_tumor_task(sections):
    for ad in sections.values():
        ad.obs["tumor"] = ad.obsm["X_hist"][:, 0] > 0.2
    model = hs.tl.train([sections["A1"], sections["A2"], sections["B1"]], task="tumor", **TINY)
    test = sections["C1"]
    hs.tl.predict(test, model)
    p = test.obs["hist_tumor"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test.obs["tumor"], p) > 0.8


def test_bad_input(sections, genes):
    with pytest.raises(ValueError, match="method"):
        hs.tl.train(sections["A1"], genes=genes, method="resnet")
    with pytest.raises(ValueError, match="genes"):
        hs.tl.train(sections["A1"])
    with pytest.raises(KeyError, match="NOPE"):
        hs.tl.train(sections["A1"], genes=[*genes, "NOPE"], **TINY)
    with pytest.raises(KeyError, match="X_other"):
        hs.tl.train(sections["A1"], genes=genes, features_key="X_other", **TINY)
    with pytest.raises(KeyError, match="tumor"):
        hs.tl.train(sections["A1"], task="tumor", **TINY)
