"""In-fold fitting of survival models: G-HANet's per-family gene selection and the training settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hist_sd.train._survival import SURVIVAL_DEFAULTS, fit_survival, select_family_genes


def test_gene_selection_keeps_columns_that_separate_early_events_from_late_patients() -> None:
    rng = np.random.default_rng(0)
    n = 200
    labels = rng.integers(0, 4, n)
    event = rng.random(n) < 0.6
    early = event & (labels < 2)
    g = pd.DataFrame({"signal": np.where(early, 1.5, 0.0) + rng.normal(size=n), "noise": rng.normal(size=n),
                      "constant": np.ones(n), "late_only": np.where(labels >= 2, 2.0, 0.0) + rng.normal(size=n)})
    sel = select_family_genes(g, {"a": ["signal", "noise", "constant"], "b": ["late_only"], "c": []}, labels, event)
    assert "signal" in sel["a"] and "constant" not in sel["a"]  # constant: NaN p-value, never selected
    assert sel["b"] == ["late_only"] and sel["c"] == []
    # censored patients of the early bins are in neither group: their values cannot matter
    g2 = g.copy()
    g2.loc[~event & (labels < 2), "signal"] = 100.0
    assert select_family_genes(g2, {"a": ["signal"]}, labels, event) == {"a": ["signal"]}
    with pytest.raises(ValueError, match="early events"):
        select_family_genes(g, {"a": ["signal"]}, labels, np.zeros(n, bool))


def test_training_settings_are_checked() -> None:
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(int(rng.integers(2, 9)), 6)).astype(np.float32) for _ in range(40)]
    time, event = rng.uniform(1, 50, 40), rng.random(40) < 0.7
    with pytest.raises(TypeError, match="Unknown training settings"):
        fit_survival(bags, time, event, method="abmil", learning_rate=1.0)
    with pytest.raises(ValueError, match="precision"):
        fit_survival(bags, time, event, method="abmil", epochs=1, precision="float16")
    model = fit_survival(bags, time, event, method="abmil", epochs=2, precision="float32", model_kwargs={"dim": 16},
                         device="cpu")
    assert model.params["precision_used"] == "float32" and len(model.history) == 2
    assert set(SURVIVAL_DEFAULTS) <= set(model.params)
    with pytest.raises(ValueError, match="one feature dimension"):
        fit_survival([*bags[:-1], np.zeros((3, 7), np.float32)], time, event, method="abmil", epochs=1)
    with pytest.raises(ValueError, match="needs the training patients' `genomics`"):
        fit_survival(bags, time, event, method="ghanet", epochs=1)
