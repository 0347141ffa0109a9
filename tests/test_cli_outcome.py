"""``hist-sd outcome SLIDES_DIR CLINICAL.csv --model M --out DIR`` on the real SVS repeated as a toy cohort.

Arguments that cannot work (a clinical table that does not match the slides, a single-class response, no events)
are refused before any slide is read (one line, exit 2); a run goes whole slides -> tiles -> features (the real
encoder) -> predicted maps -> cross-validated risk -> scores.csv + Kaplan-Meier figures. The expression model is
a ridge model on seeded features recorded as efficientnet-lite0's, as in tests/test_cli_predict.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd._cli import main

N_SLIDES = 3


@pytest.fixture(scope="module")
def cohort(svs: Path, tmp_path_factory, ridge_model_file) -> dict[str, Path]:
    """SLIDES_DIR (the SVS linked three times), a clinical CSV and a saved expression model."""
    folder = tmp_path_factory.mktemp("outcome")
    slides = folder / "slides"
    slides.mkdir()
    for i in range(N_SLIDES):
        os.symlink(svs, slides / f"case{i}.svs")
    clinical = pd.DataFrame({"slide_id": [f"case{i}.svs" for i in range(N_SLIDES)],
                             "case_id": [f"P{i}" for i in range(N_SLIDES)],
                             "survival_months": [5.0, 12.0, 30.0], "event": [1, 1, 0],
                             "stage": ["III", "II", "I"], "response": ["NR", "NR", "R"]})
    clinical.to_csv(folder / "clinical.csv", index=False)
    ridge_model_file(folder / "model.pt", mpp=0.5, spacing_px=400.0)
    return {"slides": slides, "clinical": folder / "clinical.csv", "model": folder / "model.pt", "root": folder}


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("hist-sd: ")]
    assert len(lines) == 1 and lines[0].startswith("hist-sd: error: "), err
    return lines[0]


def _args(c: dict[str, Path], clinical: Path, out: Path, *extra: str) -> list[str]:
    return ["outcome", str(c["slides"]), str(clinical), "--model", str(c["model"]), "--out", str(out), *extra]


def test_refused_before_any_slide(cohort, capsys, tmp_path) -> None:
    table = pd.read_csv(cohort["clinical"])
    cases = {
        "does not match the slides": table.iloc[1:],
        "single class": table.assign(response="R"),
        "no observed event": table.assign(event=0),
    }
    for message, df in cases.items():
        path = tmp_path / "clinical.csv"
        df.to_csv(path, index=False)
        extra = ("--task", "response") if message == "single class" else ()
        assert main(_args(cohort, path, tmp_path / "out", *extra)) == 2
        assert message in _error(capsys)
    assert main(_args(cohort, cohort["clinical"], tmp_path / "out", "--clinical", "grade")) == 2
    assert "grade" in _error(capsys)
    assert main(_args(cohort, cohort["clinical"], tmp_path / "out", "--folds", "5")) == 2
    assert "only 3 patients" in _error(capsys)
    assert main(["outcome", str(cohort["slides"]), str(cohort["clinical"]), "--model", "nope.pt", "--out",
                 str(tmp_path)]) == 2
    assert "--model" in _error(capsys)
    assert not (tmp_path / "out").exists()


def test_run(cohort, capsys) -> None:
    out = cohort["root"] / "run"
    argv = _args(cohort, cohort["clinical"], out, "--clinical", "stage", "--folds", "2", "--epochs", "2",
                 "--workers", "1")
    assert main(argv) == 0, capsys.readouterr().err
    text, _ = capsys.readouterr()
    assert "3 slides of 3 patients" in text and "convnext" in text
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["case_id"]) == ["P0", "P1", "P2"]  # every patient scored once, out of fold
    assert {"fold", "risk", "risk_group", "survival_months", "event"} <= set(scores.columns)
    assert np.isfinite(scores["risk"]).all()
    # same pixels, different stage: the clinical one-hot reaches the head
    assert scores["risk"].nunique() > 1
    folds = pd.read_csv(out / "folds.csv")
    assert set(folds["method"]) == {"convnext", "clinical", "image_features", "pseudo_bulk"}
    assert (out / "slides" / "case0.zarr").is_dir() and (out / "outcome_model.pt").is_file()
    assert type(hs.tl.load_model(out / "outcome_model.pt")).__name__ == "OutcomeModel"
    # a second run is refused unless --overwrite
    assert main(argv) == 2
    assert "--overwrite" in _error(capsys)
