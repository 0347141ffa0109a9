"""Leave-one-labelled-section-out tuning of ``hs.tl.tumor_labels`` (hist_sd._bench_tumor)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd import _bench_tumor as B

SECTIONS = ("S1", "S2", "S3")


class FakeSection:
    """Stands in for a SectionGrid: given AUCs and accuracies, and a log of which accuracies were asked for."""

    def __init__(self, auc: dict, acc: dict, asked: list, name: str) -> None:
        self.auc, self._acc, self._asked, self._name = auc, acc, asked, name
        self.keep = np.ones(10, dtype=bool)

    def accuracy(self, score_key, call_key) -> float:
        self._asked.append(self._name)
        return self._acc[score_key, call_key]


def _fakes(grid: dict, seed: int) -> tuple[dict[str, FakeSection], list]:
    rng = np.random.default_rng(seed)
    score_keys = list(itertools.product(*(grid[k] for k in B.SCORE_KNOBS)))
    call_keys = list(itertools.product(*(grid[k] for k in B.CALL_KNOBS)))
    asked: list = []
    fakes = {}
    for name in SECTIONS:
        auc = {k: float(rng.uniform(0.5, 1)) for k in score_keys}
        acc = {(s, c): float(rng.uniform(0.5, 1)) for s in score_keys for c in call_keys}
        fakes[name] = FakeSection(auc, acc, asked, name)
    return fakes, asked


GRID = {**{k: (v[0],) for k, v in B.GRID.items()}, "window_size": (100, 50), "marker_weight": (0.0, 0.5),
        "n_clusters": (None, 4)}  # fmt: skip


def test_held_out_section_never_influences_its_own_choice():
    fakes, asked = _fakes(GRID, seed=0)
    df = B.lolso(fakes, GRID)
    knobs = list(B.SCORE_KNOBS + B.CALL_KNOBS)
    for held_out in SECTIONS:
        train = [s for s in SECTIONS if s != held_out]
        # the chosen setting is the best mean AUC over the others (the AUCs here are all distinct) ...
        best_score = max(fakes[train[0]].auc, key=lambda k: np.mean([fakes[s].auc[k] for s in train]))
        chosen = tuple(df.loc[held_out, knobs])
        assert chosen[: len(B.SCORE_KNOBS)] == best_score
        assert df.loc[held_out, "auc"] == fakes[held_out].auc[best_score]
        # ... and making every other setting perfect on the held-out section does not move it
        worse = {k: (1.0 if k != best_score else v) for k, v in fakes[held_out].auc.items()}
        perturbed = dict(fakes)
        perturbed[held_out] = FakeSection(worse, dict.fromkeys(fakes[held_out]._acc, 1.0), [], held_out)
        assert tuple(B.lolso(perturbed, GRID).loc[held_out, knobs]) == chosen
    # choose() asks only the training sections for accuracies
    asked.clear()
    auc = pd.DataFrame({n: list(f.auc.values()) for n, f in fakes.items()},
                       index=pd.Index(list(fakes["S1"].auc), tupleize_cols=False))
    B.choose(auc, lambda s, sk, ck: fakes[s].accuracy(sk, ck), ["S1", "S2"], [(None, 0.5), (4, 0.5)])
    assert asked and set(asked) == {"S1", "S2"}


def test_table_layout_and_defaults():
    fakes, _ = _fakes(GRID, seed=1)
    df = B.lolso(fakes, GRID)
    assert list(df.index) == [*SECTIONS, "mean"]
    assert {"auc", "accuracy", "default_auc", "default_accuracy", *B.GRID} <= set(df.columns)
    default = B.default_setting()
    d_key = tuple(default[k] for k in B.SCORE_KNOBS)
    assert df.loc["S2", "default_auc"] == fakes["S2"].auc[d_key]
    assert df.loc["mean", "auc"] == pytest.approx(df.loc[list(SECTIONS), "auc"].mean())
    assert df.attrs["n_settings"] == 8 and set(df.attrs["chosen_on_all"]) == set(B.GRID)
    assert df["n_clusters"].dtype == object and None in set(df["n_clusters"])
    # today's defaults are the first value of each knob of the default grid
    assert default == {k: v[0] for k, v in B.GRID.items()}


def test_section_grid_reproduces_tumor_labels(data_dir):
    """The cached per-setting pipeline gives exactly what hs.tl.tumor_labels gives with the same settings."""
    from threadpoolctl import threadpool_limits

    table = hs.datasets.her2st("C1", data_dir=data_dir, scale_factors=None)["C1"].tables["table"]
    truth = B.pathologist_truth(table.obs["label"])
    positions = hs.datasets.gene_positions("hg38", data_dir=data_dir)
    grid = {**{k: (v[0],) for k, v in B.GRID.items()}, "smooth": (True, False), "marker_weight": (0.0, 0.5)}
    with threadpool_limits(1):
        sec = B.SectionGrid(table, truth, grid, gene_positions=positions)
        ad = table.copy()
        hs.tl.tumor_labels(ad, gene_positions=positions)
    keep = truth.notna().to_numpy()
    key = (100, 0.2, 1.5, "auto", 0.0, True)
    np.testing.assert_array_equal(sec._scored[key][0], ad.obs["tumor_score"].to_numpy())
    assert sec.accuracy(key, (None, 0.5)) == np.mean(ad.obs["tumor"].to_numpy()[keep] == truth[keep].astype(bool))
    assert sec.auc[key] == pytest.approx(0.825, abs=1e-3)  # measured (README)
    # one infercnvpy run served all four score settings, each scored on its own
    assert len(sec.auc) == 4 and len(set(sec.auc.values())) == 4
    raw = sec._scored[(100, 0.2, 1.5, "auto", 0.0, False)][0]
    assert np.std(raw) > np.std(sec._scored[key][0])  # smoothing evens the score out


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least two distinct"):
        B.run_tumor_labels_cv(sections=["C1"])
    with pytest.raises(ValueError, match=r"\['A1'\] have no pathologist labels"):
        B.run_tumor_labels_cv(sections=["C1", "A1"])
    with pytest.raises(ValueError, match="unknown knobs.*'windows'"):
        B.run_tumor_labels_cv(sections=["B1", "C1"], grid={"windows": (50,)})
    with pytest.raises(ValueError, match=r"`grid\['smooth'\]` is empty"):
        B.run_tumor_labels_cv(sections=["B1", "C1"], grid={"smooth": ()})
