"""``hist-sd survival``: arguments checked before any work, and a cohort a user brings, end to end."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from hist_sd import _bench_survival
from hist_sd._cli import main


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--cohorts", "blca,xyz"], ["--cohorts", "xyz", "blca, brca, gbmlgg, luad, ucec"]),
        (["--features", "somewhere"], ["--features", "--table", "--splits"]),
        (["--cohorts", "blca", "--table", "t.csv", "--features", "f", "--splits", "s"], ["either --cohorts"]),
        (["--methods", "ghanet,hist"], ["not survival methods", "hist"]),
        (["--seeds", "0"], ["--seeds", "at least 1"]),
        (["--cohorts", ","], ["--cohorts", "comma-separated"]),
        (["--signatures", "sig.csv"], ["--signatures", "your own"]),
    ],
    ids=["unknown-cohort", "own-cohort-incomplete", "both", "expression-method", "seeds-0", "empty-list",
         "signatures-without-cohort"],
)
def test_bad_arguments_fail_at_once(argv, expected, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(_bench_survival, "run_survival", lambda *a, **k: pytest.fail("the job started"))
    assert main(["survival", "--out", str(tmp_path / "out"), *argv]) == 2
    line = _error_line(capsys)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "out").exists()


def _own_cohort(blca, root: Path) -> tuple[Path, Path, Path]:
    """80 real BLCA patients written the way a user brings them: .h5 features, a CSV table, two split files."""
    cases = list(blca.patients.obs_names[:80])
    feat = root / "features"
    feat.mkdir()
    inst = blca.instances.obs
    rows = []
    for case, bag in zip(cases, blca.bags(cases), strict=True):
        slide = str(inst.loc[inst["case_id"] == case, "slide_id"].iloc[0])
        with h5py.File(feat / f"{slide}.h5", "w") as f:
            f["features"] = bag
            f["coords"] = np.stack([np.arange(len(bag)), np.zeros(len(bag))], 1).astype(np.int64)
        obs = blca.patients.obs.loc[case]
        rows.append({"case_id": case, "slide_id": f"{slide}.svs", "survival_months": obs["survival_months"],
                     "censorship": int(obs["censorship"]),
                     **dict(zip(blca.patients.var_names[:300], blca.patients[case, :300].X.ravel(), strict=True))})
    table = root / "table.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    splits = root / "splits"
    splits.mkdir()
    for k in range(2):
        test = cases[k::2]
        train = [c for c in cases if c not in test]
        pd.DataFrame({"train": pd.Series(train), "val": pd.Series(test)}).to_csv(splits / f"splits_{k}.csv")
    return feat, table, splits


@pytest.mark.parametrize("families", ["signatures", "none"])
def test_a_cohort_of_your_own_end_to_end(families, blca, data_dir, tmp_path, capsys) -> None:
    feat, table, splits = _own_cohort(blca, tmp_path)
    out = tmp_path / "out"
    argv = ["survival", "--features", str(feat), "--table", str(table), "--splits", str(splits),
            "--methods", "meanpool,coxgenomics", "--jobs", "1", "--out", str(out)]
    if families == "signatures":  # else the 300 genomic columns form one family
        argv += ["--signatures", str(data_dir / "tcga" / "signatures.csv")]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| meanpool |" in stdout and "| coxgenomics |" in stdout
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns[:5]) == ["cohort", "method", "seed", "fold", "c_index"]
    assert len(scores) == 4 and set(scores["cohort"]) == {"table"} and scores["c_index"].between(0, 1).all()
    assert (out / "km_table.png").stat().st_size > 10_000
    risks = pd.read_csv(out / "risks.csv")
    assert risks.groupby("method")["case_id"].nunique().eq(80).all()
    assert main(argv) == 2  # outputs exist: refused without --overwrite
    assert "--overwrite" in _error_line(capsys)
