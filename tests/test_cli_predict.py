"""``hist-sd predict``: arguments checked before any work (one-line errors, exit 2), a run, a failed slide -> exit 1.

Slides are crops of the real her2st B4 H&E JPEG; the model is a ridge model on seeded synthetic features recorded
as efficientnet-lite0's (the real encoder runs on the crops).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hist_sd as hs
from hist_sd._cli import main
from hist_sd.tl import _slides

MPP = "0.6875"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failing command writes to stderr (no traceback)."""
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.startswith("hist-sd: ")]
    assert len(lines) == 1 and lines[0].startswith("hist-sd: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def files(data_dir, tmp_path_factory, ridge_model_file) -> dict[str, Path]:
    """Two slides cut from B4's JPEG, a broken JPEG and a saved model."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("cli")
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # B4's JPEG is 92 Mpx; only while cropping it
    try:
        with Image.open(data_dir / "her2st" / "data" / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg") as im:
            im.crop((1000, 4500, 2600, 6100)).save(folder / "a.jpg")
            im.crop((2500, 5500, 4100, 7100)).save(folder / "b.png")
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + np.random.default_rng(0).bytes(2000))
    ridge_model_file(folder / "model.pt", mpp=0.6875, spacing_px=291.0)
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def scheduler():
    """The address of an in-process dask cluster (starts in about a second)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as lc:
        yield lc.scheduler_address


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-slide", ["`paths`", "nope.svs", "do not exist"]),
        ("missing-model-option", ["the following arguments are required: --model"]),
        ("missing-model-file", ["`model`", "no model file", "gone.pt"]),
        ("not-a-model", ["`model`", "a.jpg", "not a hist_sd model file"]),
        ("out-is-a-file", ["`out`", "is a file"]),
        ("no-mpp", ["`mpp` is needed for plain images", "a.jpg"]),
        ("same-names", ["two slides are both called 'a'"]),
        ("workers-0", ["--workers", "at least 1"]),
    ],
)
def test_bad_arguments_fail_at_once_with_one_line(case, expected, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(_slides, "_run_jobs", lambda *a, **k: pytest.fail("slides ran despite invalid arguments"))
    slides = [str(files["a.jpg"]), str(files["b.png"])]
    model = ["--model", str(files["model.pt"])]
    out = ["--out", str(tmp_path / "out")]
    mpp = ["--mpp", MPP]
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "a.png").write_bytes(files["b.png"].read_bytes())
    argv = {
        "missing-slide": [*slides, str(tmp_path / "nope.svs"), *model, *out, *mpp],
        "missing-model-option": [*slides, *out, *mpp],
        "missing-model-file": [*slides, "--model", str(tmp_path / "gone.pt"), *out, *mpp],
        "not-a-model": [*slides, "--model", str(files["a.jpg"]), *out, *mpp],
        "out-is-a-file": [*slides, *model, "--out", str(tmp_path / "file.txt"), *mpp],
        "no-mpp": [*slides, *model, *out],
        "same-names": [*slides, str(tmp_path / "a.png"), *model, *out, *mpp],
        "workers-0": [*slides, *model, *out, *mpp, "--workers", "0"],
    }[case]
    assert main(["predict", *argv]) == 2
    line = error_line(capsys)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "out").exists()


def test_predict_runs_resumes_and_reports_a_failed_slide(files, scheduler, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", str(files["model.pt"]), "--out", str(out), "--mpp", MPP, "--scheduler", scheduler]
    assert main(["predict", str(files["a.jpg"]), str(files["b.png"]), *args]) == 0
    stdout, _ = capsys.readouterr()
    assert "| slide | status | n_tiles | seconds | error |" in stdout
    assert "| a | done |" in stdout and "| b | done |" in stdout and f"results in {out}" in stdout
    assert {p.name for p in out.iterdir()} == {"a.zarr", "b.zarr", "slides.csv"}
    assert hs.io.read_zarr(out / "a.zarr").tables["hist_pred"].n_vars == 4

    # a broken slide added: the done ones are skipped, the broken one fails, exit status 1 after the table
    assert main(["predict", str(files["a.jpg"]), str(files["broken.jpg"]), str(files["b.png"]), *args]) == 1
    stdout, stderr = capsys.readouterr()
    assert "| a | skipped |" in stdout and "| b | skipped |" in stdout and "| broken | failed |" in stdout
    line = [s for s in stderr.splitlines() if s.startswith("hist-sd: error: ")]
    assert len(line) == 1 and "1 of 3 slides failed (broken)" in line[0] and "slides.csv" in line[0]
    csv = pd.read_csv(out / "slides.csv")
    assert csv["status"].tolist() == ["skipped", "failed", "skipped"] and isinstance(csv.loc[1, "error"], str)
