"""A method or a task is one registration: the engine, prediction, CV and checkpoints read their specs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd.model import METHODS, TASKS, MethodSpec, TaskSpec, register_method, register_task


def test_every_registered_method_is_complete():
    assert {"hist", "hist_noattn", "hist_noconvmixer", "ridge", "mlp", "transformer", "gnn"} <= set(METHODS)
    assert {"ghanet", "ghanet_nocab", "ghanet_nohyper", "abmil", "transmil", "meanpool", "snn",
            "coxgenomics"} <= set(METHODS)
    for spec in METHODS.values():
        assert spec.input in hs.model.INPUT_KINDS and spec.epochs >= 0
        # a method predicts expression per spot or survival per patient, never both
        assert spec.supports(TASKS["expression"]) != spec.patient_level
        kw = {"omic_sizes": [2, 3]} if spec.genomics == "train" else {}
        net = spec.network(8, 3, preset="tiny", **kw)
        assert type(net).__name__ in hs.nn.MODELS  # checkpoints can rebuild it


def test_survival_methods_need_the_survival_task():
    with pytest.raises(ValueError, match="must have tasks"):
        register_method(MethodSpec(name="mil_x", description="x", network=lambda i, o, **k: None, input="bag",
                                   epochs=1))
    with pytest.raises(ValueError, match="genomics must be one of"):
        register_method(MethodSpec(name="mil_y", description="y", network=lambda i, o, **k: None, input="bag",
                                   epochs=1, tasks=("survival",), genomics="always"))
    assert "mil_x" not in METHODS and "mil_y" not in METHODS


def test_a_new_method_is_one_registration(sections, genes, tmp_path):
    spec = MethodSpec(name="mlp_wide", description="a wider per-spot MLP", input="spot", epochs=4,
                      network=lambda i, o, preset="compact", **kw: hs.nn.SpotMLP(i, o, hidden=512, **kw))
    register_method(spec)
    try:
        register_method(spec)  # the same spec again: harmless
        with pytest.raises(ValueError, match="already registered"):
            register_method(replace(spec, epochs=5))
        model = hs.tl.train([sections["A1"], sections["B1"]], genes=genes, method="mlp_wide", progress=False)
        assert model.net.hparams["hidden"] == 512 and len(model.history) == 4
        loaded = hs.tl.load_model(model.save(tmp_path / "wide.pt"))
        test = sections["C1"]
        hs.tl.predict(test, loaded)
        assert test.obsm["hist_pred"].shape == (test.n_obs, len(genes))
        res = hs.tl.cross_validate(sections, method="mlp_wide", genes=genes, progress=False)
        assert set(res.scores["method"]) == {"mlp_wide"}
    finally:
        METHODS.pop("mlp_wide")


def test_a_new_task_is_one_registration(sections):
    """Regress an obs column: targets, loss, link and where predictions go all come from the TaskSpec."""
    from hist_sd.model._tasks import _expression_loss, gene_scores

    def targets(adata, genes, truth_key):
        return adata.obs[[truth_key]].to_numpy(np.float32)

    register_task(TaskSpec(
        name="obs_score", description="regression of one obs column", targets=targets,
        outputs=lambda genes, truth_key: [truth_key], loss=_expression_loss, regression=True,
        corr_loss=False, link=lambda x: x, score=gene_scores, metric="pearson", key="score_pred",
        location="obs", needs_genes=False,
    ))
    try:
        for ad in sections.values():
            ad.obs["score"] = ad.obsm["X_hist"][:, 0] * 2 + 1
        model = hs.tl.train([sections["A1"], sections["B1"]], task="obs_score", truth_key="score",
                            method="ridge", progress=False)
        test = sections["C1"]
        hs.tl.predict(test, model)
        r = np.corrcoef(test.obs["score_pred"], test.obs["score"])[0, 1]
        assert r > 0.8
        res = hs.tl.cross_validate(sections, task="obs_score", truth_key="score", method="mlp",
                                   train_kwargs={"epochs": 40}, progress=False)
        assert isinstance(res.summary, pd.DataFrame) and res.summary.loc[0, "mean_pearson"] > 0.8
    finally:
        TASKS.pop("obs_score")


def test_method_and_task_must_fit(sections, genes):
    for ad in sections.values():
        ad.obs["tumor"] = ad.obsm["X_hist"][:, 0] > 0
    with pytest.raises(ValueError, match="supports the tasks"):
        hs.tl.train(sections["A1"], task="tumor", method="ridge", progress=False)
    with pytest.raises(ValueError, match="supports the tasks"):
        hs.tl.cross_validate(sections, task="tumor", method="ridge", progress=False)
    with pytest.raises(ValueError, match="task"):
        hs.tl.train(sections["A1"], genes=genes, task="survival")
