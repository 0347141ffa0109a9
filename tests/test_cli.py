"""The ``hist-sd`` command line: arguments are checked before any work, errors are one line, ``--help`` is light."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import hist_sd
from hist_sd import _bench
from hist_sd._cli import main

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).parent / "hist-sd"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failing command writes to stderr (nothing on stdout, no traceback)."""
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hist-sd: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["main", "--held-out", "B1"], ["--held-out", "B1", "no H&E image", "B4, C2, C3, C4, C5, C6"]),
        (["main", "--held-out", "Z9"], ["--held-out", "'Z9'", "not a her2st section", "B4, C2, C3, C4, C5, C6"]),
        (["main", "--genes", "0"], ["--genes", "at least 1", "0"]),
        (["main", "--genes", "-5"], ["--genes", "at least 1", "-5"]),
        (["main", "--genes", "many"], ["--genes", "integer", "'many'"]),
        (["main", "--epochs", "0"], ["--epochs", "at least 1", "0"]),
        (["benchmark", "--epochs", "-1"], ["--epochs", "at least 1"]),
        (["benchmark", "--jobs", "0"], ["--jobs", "at least 1"]),
        (["main", "--no-such-option"], ["unrecognized arguments", "--no-such-option"]),
        ([], ["command"]),
    ],
    ids=["no-image", "unknown-section", "genes-0", "genes-negative", "genes-text", "epochs-0",
         "benchmark-epochs", "benchmark-jobs", "unknown-option", "no-command"],
)
def test_bad_arguments_fail_at_once_with_one_line(argv, expected, tmp_path, capsys, monkeypatch) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("the job started although its arguments are invalid")

    monkeypatch.setattr(_bench, "run_main", must_not_run)
    monkeypatch.setattr(_bench, "run_benchmark", must_not_run)
    if argv and argv[0] in ("main", "benchmark"):
        argv = [argv[0], "--out", str(tmp_path / "out"), *argv[1:]]
    t0 = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - t0 < 30  # no data read: seconds, not the minute it took before
    line = error_line(capsys)
    for text in expected:
        assert text in line, line
    assert not (tmp_path / "out").exists()


def test_missing_data_dir_is_a_user_error(tmp_path, capsys) -> None:
    assert main(["main", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "nowhere")]) == 2
    line = error_line(capsys)
    assert "--data-dir" in line and "nowhere" in line


def test_existing_outputs_are_a_user_error_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "B4.zarr").mkdir()
    monkeypatch.setattr(_bench, "run_main", lambda *a, **k: pytest.fail("run_main was called"))
    assert main(["main", "--out", str(tmp_path)]) == 2
    line = error_line(capsys)
    assert "B4.zarr" in line and "--overwrite" in line


def test_verbose_shows_the_traceback(tmp_path, capsys) -> None:
    for argv in (["-v", "main"], ["main", "-v"]):
        assert main([*argv, "--out", str(tmp_path), "--held-out", "B1"]) == 2
        err = capsys.readouterr().err
        assert "Traceback" in err and err.strip().splitlines()[-1].startswith("hist-sd: error: ")


def test_runtime_errors_are_one_line_and_exit_1(tmp_path, capsys, monkeypatch) -> None:
    def fails(*args, **kwargs):
        raise KeyError("something deep inside")

    monkeypatch.setattr(_bench, "run_main", fails)
    assert main(["main", "--out", str(tmp_path / "out")]) == 1
    line = error_line(capsys)
    assert "something deep inside" in line and "-v" in line


def test_valid_arguments_reach_the_job(tmp_path, capsys, monkeypatch) -> None:
    seen = {}

    def fake_run_main(out, **kwargs):
        seen.update(out=out, **kwargs)
        return {"held_out": kwargs["held_out"], "mean_pearson": 0.5, "median_pearson": 0.4, "genes_r_gt_0.3": 3,
                "n_genes": kwargs["n_genes"]}

    monkeypatch.setattr(_bench, "run_main", fake_run_main)
    assert main(["main", "--out", str(tmp_path), "--held-out", "C3", "--genes", "7", "--epochs", "3"]) == 0
    assert seen["held_out"] == "C3" and seen["n_genes"] == 7 and seen["epochs"] == 3 and seen["out"] == tmp_path
    assert "held-out C3: mean PCC 0.500" in capsys.readouterr().out


def test_run_main_validates_its_arguments_before_reading(tmp_path, monkeypatch) -> None:
    from hist_sd import datasets

    monkeypatch.setattr(datasets, "her2st", lambda *a, **k: pytest.fail("data were read"))
    with pytest.raises(ValueError, match=r"`held_out`.*B1.*no H&E image.*B4, C2"):
        _bench.run_main(tmp_path, held_out="B1")
    with pytest.raises(ValueError, match=r"`n_genes`.*at least 1"):
        _bench.run_main(tmp_path, n_genes=0)
    with pytest.raises(ValueError, match=r"`epochs`.*at least 1"):
        _bench.run_main(tmp_path, epochs=0)


def test_image_sections_match_the_dataset() -> None:
    from hist_sd.datasets._her2st import HER2ST_IMAGES

    assert tuple(HER2ST_IMAGES) == _bench.HER2ST_IMAGE_SECTIONS


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"hist-sd {hist_sd.__version__}"


def test_console_script(tmp_path) -> None:
    assert CONSOLE_SCRIPT.exists(), "install the package (`pip install -e .`) to get the `hist-sd` script"
    res = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == f"hist-sd {hist_sd.__version__}"
    res = subprocess.run([str(CONSOLE_SCRIPT), "main", "--out", str(tmp_path / "out"), "--held-out", "B1"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and "sections with an H&E image" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [["--help"], ["main", "--help"], ["benchmark", "--help"], ["--version"]])
def test_help_does_not_import_torch(argv) -> None:
    code = textwrap.dedent(f"""
        import sys
        from hist_sd._cli import main
        try:
            main({argv!r})
        except SystemExit:
            pass
        assert "torch" not in sys.modules, "torch was imported"
        """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "usage: hist-sd" in res.stdout or "hist-sd " in res.stdout
