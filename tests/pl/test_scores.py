from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import hist_sd as hs


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "gene": [f"g{i}" for i in range(30)] * 2,
            "pearson": np.r_[rng.normal(0.2, 0.1, 30), rng.normal(0.4, 0.1, 30)],
            "method": ["baseline"] * 30 + ["hist"] * 30,
        }
    )


def test_scores_by_method(tmp_path):
    df = _scores()
    df.loc[0, "pearson"] = np.nan  # left out
    fig = hs.pl.scores(df, by="method", order=["hist", "baseline"], save=tmp_path / "s.png")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["hist\n(n=30)", "baseline\n(n=29)"]
    means = [c for c in ax.collections if c.get_label() == "mean"][0].get_offsets()
    assert means[0][1] == pytest.approx(df.loc[df.method == "hist", "pearson"].mean())
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert ax.get_ylabel() == "Pearson r per gene"  # a readable label, not the column key
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean", "0.3"]
    assert hs.pl.scores(df, "pearson", ylabel="PCC").axes[0].get_ylabel() == "PCC"
    assert hs.pl.scores(df.rename(columns={"pearson": "mine"}), "mine").axes[0].get_ylabel() == "mine"


def test_scores_errors():
    df = _scores()
    with pytest.raises(KeyError, match="pcc"):
        hs.pl.scores(df, "pcc")
    with pytest.raises(KeyError, match="fold"):
        hs.pl.scores(df, by="fold")
    with pytest.raises(KeyError, match="other"):
        hs.pl.scores(df, by="method", order=["other"])
    with pytest.raises(ValueError, match="finite"):
        hs.pl.scores(df.assign(pearson=np.nan))
