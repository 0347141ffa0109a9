"""Kaplan-Meier plot of risk groups (hist_sd.pl._survival) on real TCGA-BLCA outcomes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from hist_sd.pl._survival import kaplan_meier


@pytest.fixture(scope="module")
def patients(data_dir: Path) -> AnnData:
    """TCGA-BLCA patients as an AnnData: obs survival_months, event, a risk from age + TP53 and a stage-like group."""
    df = pd.read_csv(data_dir / "tcga" / "porpoise_mutsig" / "tcga_blca_all_clean.csv.zip")
    df = df.drop_duplicates("case_id").set_index("case_id")
    obs = pd.DataFrame(
        {
            "survival_months": df["survival_months"].to_numpy(float),
            "event": (1 - df["censorship"]).to_numpy(int),
            "risk": (0.05 * df["age"] + 0.3 * df["TP53_rnaseq"]).to_numpy(float),
            "older": np.where(df["age"] > 70, "over 70", "70 or under"),
        },
        index=df.index.astype(str),
    )
    return AnnData(obs=obs)


def _curves(ax) -> list[str]:
    return [ln.get_label() for ln in ax.get_lines() if not ln.get_label().startswith("_")]


def _legend_p(ax) -> str:
    return ax.get_legend().get_title().get_text().split("log-rank p = ")[1]


def _lifelines_p(ad: AnnData, high: np.ndarray) -> float:
    from lifelines.statistics import logrank_test

    t, e = ad.obs["survival_months"].to_numpy(), ad.obs["event"].to_numpy()
    return logrank_test(t[high], t[~high], event_observed_A=e[high], event_observed_B=e[~high]).p_value


def test_kaplan_meier_median_split(patients: AnnData) -> None:
    import matplotlib.pyplot as plt

    ax = kaplan_meier(patients, title="BLCA")
    risk = patients.obs["risk"].to_numpy()
    high = risk > np.median(risk)
    assert _curves(ax) == [f"high (n={high.sum()})", f"low (n={(~high).sum()})"]
    assert _legend_p(ax) == f"{_lifelines_p(patients, high):.3g}"
    assert ax.get_title() == "BLCA"
    # each curve is a step function from 1 down to the group's Kaplan-Meier estimate
    ys = [ln.get_ydata() for ln in ax.get_lines() if not ln.get_label().startswith("_")]
    assert all(y[0] == 1.0 and np.all(np.diff(y) <= 0) for y in ys)
    plt.close(ax.figure)


def test_kaplan_meier_threshold_groups_and_cohort(patients: AnnData, tmp_path: Path) -> None:
    risk = patients.obs["risk"].to_numpy()
    thr = float(np.quantile(risk, 0.7))  # e.g. a training fold's cut
    cohort = SimpleNamespace(patients=patients)
    ax = kaplan_meier(cohort, threshold=thr, at_risk=True, save=tmp_path / "km.png")
    high = risk > thr
    assert _curves(ax)[0] == f"high (n={high.sum()})"
    assert _legend_p(ax) == f"{_lifelines_p(patients, high):.3g}"
    assert (tmp_path / "km.png").stat().st_size > 0

    ax2 = kaplan_meier(patients, groups_key="older")
    older = (patients.obs["older"] == "over 70").to_numpy()
    assert _curves(ax2) == [f"70 or under (n={(~older).sum()})", f"over 70 (n={older.sum()})"]
    assert _legend_p(ax2) == f"{_lifelines_p(patients, older):.3g}"


def test_kaplan_meier_errors(patients: AnnData) -> None:
    with pytest.raises(KeyError, match="`key`='score' is not a column"):
        kaplan_meier(patients, key="score")
    with pytest.raises(KeyError, match="`time_key`='os' is not a column"):
        kaplan_meier(patients, time_key="os")
    with pytest.raises(KeyError, match="`groups_key`"):
        kaplan_meier(patients, groups_key="stage")
    with pytest.raises(ValueError, match="two non-empty groups"):
        kaplan_meier(patients, threshold=1e9)
    with pytest.raises(TypeError, match="patients AnnData"):
        kaplan_meier(pd.DataFrame())
    bad = patients.copy()
    bad.obs["event"] = 2
    with pytest.raises(ValueError, match="`event` must be binary"):
        kaplan_meier(bad)
