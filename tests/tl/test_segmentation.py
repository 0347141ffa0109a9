from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

import hist_sd as hs
from hist_sd.tl._segmentation import SEGMENTATION_METRICS, segmentation_metrics

TRUTH = [True, True, True, False, False, False, False, True]
PRED = [0.9, 0.8, 0.3, 0.6, 0.1, 0.2, 0.4, 0.7]


def _section(truth, pred, name: str = "S1") -> AnnData:
    n = len(pred)
    obs = pd.DataFrame(
        {"tumor": truth, "hist_tumor": np.asarray(pred, dtype=float), "section": pd.Categorical([name] * n)},
        index=[f"{name}_{i}" for i in range(n)],
    )
    return AnnData(X=np.zeros((n, 1), dtype=np.float32), obs=obs)


def test_metrics_by_hand():
    df = hs.tl.evaluate_segmentation(_section(TRUTH, PRED))
    assert list(df.index) == ["S1"] and df.index.name == "section"
    assert list(df.columns) == ["n_spots", "n_tumor", *SEGMENTATION_METRICS]
    row = df.loc["S1"]
    # calls at 0.5: TP = 3 (0.9, 0.8, 0.7), FN = 1 (0.3), FP = 1 (0.6), TN = 3
    assert row["n_spots"] == 8 and row["n_tumor"] == 4
    assert row["iou"] == pytest.approx(3 / 5)
    assert row["dice"] == pytest.approx(6 / 8)
    for m in ("sensitivity", "precision", "f1", "specificity", "accuracy"):
        assert row[m] == pytest.approx(0.75), m
    # 14 of the 16 (tumour, non-tumour) pairs are ordered correctly (0.3 < 0.6 and 0.3 < 0.4)
    assert row["auc"] == pytest.approx(14 / 16)


def test_threshold_changes_calls_not_auc():
    row = hs.tl.evaluate_segmentation(_section(TRUTH, PRED), threshold=0.25).loc["S1"]
    # calls: 0.9 0.8 0.3 0.6 0.4 0.7 -> TP = 4, FP = 2, TN = 2, FN = 0
    assert row["sensitivity"] == pytest.approx(1.0)
    assert row["precision"] == pytest.approx(4 / 6)
    assert row["specificity"] == pytest.approx(0.5)
    assert row["accuracy"] == pytest.approx(6 / 8)
    assert row["iou"] == pytest.approx(4 / 6)
    assert row["dice"] == pytest.approx(8 / 10)
    assert row["f1"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    assert row["auc"] == pytest.approx(14 / 16)


def test_several_sections_mean_and_mean_row():
    perfect = _section([True, False, True, False], [0.9, 0.1, 0.8, 0.2], name="S2")
    df = hs.tl.evaluate_segmentation([_section(TRUTH, PRED), perfect])
    assert list(df.index) == ["S1", "S2"]
    assert df.loc["S2", "auc"] == 1.0 and df.loc["S2", "iou"] == 1.0
    assert df.attrs["mean"]["auc"] == pytest.approx((14 / 16 + 1) / 2)
    with_mean = hs.tl.evaluate_segmentation({"a": _section(TRUTH, PRED), "b": perfect}, mean_row=True)
    assert list(with_mean.index) == ["a", "b", "mean"]
    assert with_mean.loc["mean", "accuracy"] == pytest.approx((0.75 + 1.0) / 2)


def test_integer_truth_and_missing_values_left_out():
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 1, np.nan, 1], dtype=float)
    pred = [*PRED, 0.99, np.nan]  # the last two spots lack truth / pred
    row = hs.tl.evaluate_segmentation(_section(truth, pred)).loc["S1"]
    assert row["n_spots"] == 8
    assert row["auc"] == pytest.approx(14 / 16)
    # object column of booleans with a missing label
    obj = pd.Series([*TRUTH, None], dtype=object)
    row = hs.tl.evaluate_segmentation(_section(obj.to_numpy(), [*PRED, 0.5])).loc["S1"]
    assert row["n_spots"] == 8 and row["accuracy"] == pytest.approx(0.75)


def test_boolean_prediction():
    row = hs.tl.evaluate_segmentation(_section(TRUTH, np.asarray(PRED) >= 0.5)).loc["S1"]
    assert row["accuracy"] == pytest.approx(0.75)
    assert row["auc"] == pytest.approx(0.75)  # a hard call: AUC = (sensitivity + specificity) / 2


def test_one_class_gives_nan_auc_with_warning():
    with pytest.warns(UserWarning, match="only one class"):
        row = hs.tl.evaluate_segmentation(_section([True] * 4, [0.9, 0.2, 0.6, 0.7])).loc["S1"]
    assert np.isnan(row["auc"])
    assert row["sensitivity"] == pytest.approx(0.75)
    assert np.isnan(row["specificity"])  # no true negatives or false positives: undefined, not 0


def test_no_positive_call_gives_nan_precision():
    m = segmentation_metrics(np.array([1, 0, 1, 0]), np.array([0.1, 0.2, 0.3, 0.4]))
    assert np.isnan(m["precision"]) and np.isnan(m["f1"])
    assert m["sensitivity"] == 0.0 and m["iou"] == 0.0 and m["specificity"] == 1.0


@pytest.mark.filterwarnings("ignore:The table is annotating")
def test_spatialdata_input(b4):
    import spatialdata as sd

    table = b4.tables["table"].copy()
    rng = np.random.default_rng(0)
    table.obs["tumor"] = rng.random(table.n_obs) > 0.5
    table.obs["hist_tumor"] = table.obs["tumor"].astype(float) * 0.6 + rng.random(table.n_obs) * 0.5
    sdata = sd.SpatialData(tables={"table": table})
    df = hs.tl.evaluate_segmentation(sdata)
    assert list(df.index) == ["B4"]
    expected = hs.tl.evaluate_segmentation(table)
    pd.testing.assert_frame_equal(df, expected)
    assert 0.9 < df.loc["B4", "auc"] <= 1.0


def test_errors():
    ad = _section(TRUTH, PRED)
    with pytest.raises(KeyError, match="`pred`='nope'"):
        hs.tl.evaluate_segmentation(ad, pred="nope")
    with pytest.raises(KeyError, match="`truth`='nope'"):
        hs.tl.evaluate_segmentation(ad, truth="nope")
    ad.obs["label"] = ["a"] * ad.n_obs
    with pytest.raises(TypeError, match="truth"):
        hs.tl.evaluate_segmentation(ad, truth="label")
    with pytest.raises(TypeError, match="pred"):
        hs.tl.evaluate_segmentation(ad, pred="label")
    ad.obs["three"] = [0, 1, 2, 0, 1, 2, 0, 1]
    with pytest.raises(ValueError, match="boolean or 0/1"):
        hs.tl.evaluate_segmentation(ad, truth="three")
    with pytest.raises(ValueError, match="threshold"):
        hs.tl.evaluate_segmentation(ad, threshold=float("nan"))
    ad.obs["empty"] = np.nan
    with pytest.raises(ValueError, match="no spot"):
        hs.tl.evaluate_segmentation(ad, pred="empty")


def test_results_concatenate():
    import pandas as pd
    from anndata import AnnData

    obs = pd.DataFrame({"p": [0.9, 0.2, 0.8, 0.1], "t": [True, False, True, False], "section": ["s"] * 4})
    a = hs.tl.evaluate_segmentation(AnnData(obs=obs), pred="p", truth="t")
    both = pd.concat([a, a])
    assert len(both) == 2 and isinstance(a.attrs["mean"]["auc"], float)
