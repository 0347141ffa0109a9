"""The HiST training recipe: defaults, input noise, correlation loss and test-time augmentation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import hist_sd as hs
from hist_sd.model import METHODS, prepare_section
from hist_sd.model._forward import symmetries as _symmetries
from hist_sd.nn import masked_correlation_loss as _correlation_loss

TINY = {"preset": "tiny", "model_kwargs": {"base_width": 8}, "epochs": 3, "progress": False}


def test_defaults_are_shared_by_hist_and_its_ablations(sections, genes):
    for field in ("epochs", "input_noise", "corr_weight"):
        assert getattr(METHODS["hist"], field) == getattr(METHODS["hist_noattn"], field) == getattr(METHODS["hist_noconvmixer"], field)
    assert METHODS["hist"].input_noise > 0 and METHODS["hist"].corr_weight > 0
    hist = hs.tl.train(sections["A1"], genes=genes, method="hist_noattn", **TINY)
    mlp = hs.tl.train(sections["A1"], genes=genes, method="mlp", epochs=2, progress=False)
    assert hist.params["input_noise"] == METHODS["hist"].input_noise and hist.params["tta"] is True
    assert hist.params["crop"] == 16 and hist.params["pca"] == 32 and hist.params["batch_size"] == 8
    assert mlp.params["input_noise"] == 0.0 and mlp.params["corr_weight"] == 0.0
    compact = hs.models.HiSTNet.from_preset("compact", 32, 5)
    assert compact.hparams["depth"] == 3 and compact.hparams["base_width"] == 32
    assert compact.hparams["attention"] and compact.hparams["convmixer"]


def test_correlation_loss_matches_pearson_and_ignores_masked_positions():
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.normal(size=(2, 3, 4, 4)).astype(np.float32))
    target = torch.from_numpy(rng.normal(size=(2, 3, 4, 4)).astype(np.float32))
    mask = torch.from_numpy(rng.random((2, 4, 4)) > 0.3)
    p = pred.movedim(1, -1)[mask].numpy()
    t = target.movedim(1, -1)[mask].numpy()
    want = np.mean([1 - np.corrcoef(p[:, j], t[:, j])[0, 1] for j in range(3)])
    assert float(_correlation_loss(pred, target, mask)) == pytest.approx(want, abs=1e-5)
    # a perfect (affine) prediction costs nothing; garbage at masked-out positions changes nothing
    assert float(_correlation_loss(2 * target + 1, target, mask)) == pytest.approx(0.0, abs=1e-5)
    garbage = pred.clone()
    garbage.movedim(1, -1)[~mask] = 1e6
    assert float(_correlation_loss(garbage, target, mask)) == pytest.approx(want, abs=1e-5)


def test_input_noise_and_corr_weight_change_training(sections, genes):
    base = hs.tl.train(sections["A1"], genes=genes, seed=1, **TINY)
    quiet = hs.tl.train(sections["A1"], genes=genes, seed=1, input_noise=0.0, **TINY)
    plain = hs.tl.train(sections["A1"], genes=genes, seed=1, corr_weight=0.0, **TINY)
    ref = base.net.state_dict()
    for other in (quiet, plain):
        assert any(not torch.equal(ref[k], v) for k, v in other.net.state_dict().items())
    assert quiet.params["input_noise"] == 0.0 and plain.params["corr_weight"] == 0.0
    for bad in ({"input_noise": -1.0}, {"corr_weight": float("nan")}, {"crop": 0}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            hs.tl.train(sections["A1"], genes=genes, **{**TINY, **bad})


def test_tta_averages_over_grid_symmetries(sections, genes):
    assert len(_symmetries(square=True)) == 8 and len(_symmetries(square=False)) == 4
    model = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, **TINY)
    sec = prepare_section(sections["C1"], features_key="X_hist", name="C1")
    swapped = replace(sec, rows=sec.cols, cols=sec.rows, grid_shape=sec.grid_shape[::-1])
    # averaged over the 8 symmetries, a transposed slide gets the same predictions spot by spot
    np.testing.assert_allclose(model.predict_section(sec), model.predict_section(swapped), rtol=1e-4, atol=1e-4)
    model.params["tta"] = False
    single = model.predict_section(sec)
    assert not np.allclose(single, model.predict_section(swapped), atol=1e-4)
    no_tta = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, tta=False, **TINY)
    assert no_tta.params["tta"] is False
