"""Command line of hist_sd.

``hist-sd main`` (train, predict a held-out section, write results), ``hist-sd benchmark`` (expression and
tumour, her2st and mouse olfactory bulb) and ``hist-sd survival`` (whole-slide survival, TCGA or your cohort).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from hist_sd import __version__

PROG = "hist-sd"
#: Exit statuses: a failure during the job, and arguments that cannot work (argparse's own status).
FAILED, USAGE = 1, 2


class _UsageError(Exception):
    """Arguments that cannot work; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``hist-sd: error: ...``), not a usage dump and an exit."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _count(text: str) -> int:
    """An integer of at least 1 (``--genes``, ``--epochs``, ``--jobs``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {value}")
    return value


def _folder(text: str) -> str:
    """An existing folder (``--data-dir``)."""
    if not Path(text).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    return text


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level; show tracebacks of errors")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    # -v also after the command (SUPPRESS: an absent sub-command -v leaves the top-level value alone)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    data_help = "local data mirror (default: $HIST_SD_DATA_DIR or download)"

    m = sub.add_parser("main", parents=[common], help="train HiST on her2st image sections, predict a held-out patient's section")
    m.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    m.add_argument("--data-dir", type=_folder, default=None, help=data_help)
    m.add_argument("--held-out", default="B4", metavar="SECTION",
                   help="held-out her2st section with an H&E image (B4, C2-C6; default B4); its patient is left out of training")
    m.add_argument("--genes", type=_count, default=50, help="number of spatially variable genes (default 50)")
    m.add_argument("--epochs", type=_count, default=None, help="training epochs (default: the method's default)")
    m.add_argument("--seed", type=int, default=0, help="seed of the training (default 0)")
    m.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    b = sub.add_parser("benchmark", parents=[common], help="cross-validated comparison of HiST, ablations and baselines")
    b.add_argument("--out", type=Path, default=Path("results/benchmark"))
    b.add_argument("--data-dir", type=_folder, default=None, help=data_help)
    b.add_argument("--methods", nargs="+", default=None)
    b.add_argument("--protocols", nargs="+", default=["lopo", "loso"], choices=["lopo", "loso"])
    b.add_argument("--genes", type=_count, default=50)
    b.add_argument("--epochs", type=_count, default=None)
    b.add_argument("--no-mob", action="store_true", help="skip the mouse olfactory bulb")
    b.add_argument("--no-tumor", action="store_true", help="skip tumour labels and tumour segmentation")
    b.add_argument("--levers", nargs="*", default=None,
                   help="levers to run on her2st leave-one-patient-out (default: all; none with an empty list)")
    b.add_argument("--jobs", type=_count, default=2, help="worker processes (one torch thread each; default 2)")

    s = sub.add_parser("survival", parents=[common],
                       help="5-fold whole-slide survival: G-HANet against MIL baselines, the linear floor and genomic references")
    s.add_argument("--out", type=Path, default=Path("results/survival"), help="output folder (default: results/survival)")
    s.add_argument("--data-dir", type=_folder, default=None, help="local data mirror (default: $HIST_SD_DATA_DIR)")
    s.add_argument("--cohorts", type=_names, default=None,
                   help="bundled TCGA cohorts, comma-separated (default: blca,brca,gbmlgg,luad,ucec)")
    s.add_argument("--features", default=None, metavar="DIR", help="your cohort: a folder of <slide_id>.pt/.h5 features")
    s.add_argument("--table", default=None, metavar="CSV",
                   help="your cohort: case_id, slide_id, survival_months, censorship and genomic columns")
    s.add_argument("--splits", default=None, metavar="DIR", help="your cohort: a folder of splits_<k>.csv (train, val)")
    s.add_argument("--signatures", default=None, metavar="CSV",
                   help="your cohort: gene families (columns = families, rows = genes), e.g. tcga/signatures.csv of "
                        "the data mirror; without it the genomic columns form one family")
    s.add_argument("--methods", type=_names, default=None,
                   help="comma-separated survival methods (default: ghanet,abmil,meanpool,snn,coxgenomics; also "
                        "ghanet_nocab, ghanet_nohyper, transmil)")
    s.add_argument("--seeds", type=_count, default=1, help="training seeds per fold (default 1)")
    s.add_argument("--epochs", type=_count, default=None, help="epochs of the gradient-trained methods (default 20)")
    s.add_argument("--jobs", type=_count, default=2, help="worker processes (one torch thread each; default 2)")
    s.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    pr = sub.add_parser("predict", parents=[common],
                        help="predict many slides with a saved model, one dask task per slide (resumable)")
    pr.add_argument("slides", nargs="+", metavar="SLIDE",
                    help="slide files: .svs, .tif/.tiff (pyramidal, OME-TIFF), .ndpi, .mrxs, .scn, .bif, or .jpg/.png")
    pr.add_argument("--model", required=True, metavar="M", help="a saved model (`hs.tl.train(...).save(path)`)")
    pr.add_argument("--out", type=Path, required=True, metavar="DIR",
                    help="results folder: <slide>.zarr per slide and slides.csv; slides already there are skipped")
    pr.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="address of a running dask scheduler (default: a local cluster of --workers processes)")
    pr.add_argument("--workers", type=_count, default=2, help="worker processes of the local cluster (default 2)")
    pr.add_argument("--mpp", type=float, default=None,
                    help="µm per pixel: required for JPEG/PNG; replaces the scale in whole-slide files' metadata")
    pr.add_argument("--overwrite", action="store_true", help="redo slides whose results exist")
    _outcome_parser(sub, common)
    return p


def _names(text: str) -> list[str]:
    """A comma-separated list of names (``--cohorts``, ``--methods``)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _check_survival(args: argparse.Namespace) -> None:
    from hist_sd import _bench_survival

    _bench_survival.check_survival_args(args.out, cohorts=args.cohorts, features=args.features, table=args.table,
                                        splits=args.splits, methods=args.methods, overwrite=args.overwrite,
                                        signatures=args.signatures)


def _run_survival(args: argparse.Namespace) -> None:
    from hist_sd import _bench_survival

    summary = _bench_survival.run_survival(
        args.out, cohorts=args.cohorts, features=args.features, table=args.table, splits=args.splits,
        signatures=args.signatures, methods=args.methods, seeds=range(args.seeds), epochs=args.epochs, n_jobs=args.jobs, data_dir=args.data_dir,
        overwrite=args.overwrite,
    )
    sys.stdout.write("C-index (Harrell), mean ± sd over folds:\n" + _bench_survival.markdown_table(summary) + "\n")
    sys.stdout.write(f"total {summary.attrs['total_seconds']:.0f} s; scores in {args.out / 'scores.csv'}\n")


def _check_main(args: argparse.Namespace) -> None:
    from hist_sd import _bench

    _bench.check_main_args(args.out, held_out=args.held_out, n_genes=args.genes, epochs=args.epochs,
                           overwrite=args.overwrite, flags=True)


def _run_main(args: argparse.Namespace) -> None:
    from hist_sd import _bench

    res = _bench.run_main(args.out, data_dir=args.data_dir, held_out=args.held_out, n_genes=args.genes,
                          epochs=args.epochs, seed=args.seed, overwrite=args.overwrite)
    sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
    sys.stdout.write(
        f"held-out {res['held_out']}: mean PCC {res['mean_pearson']:.3f}, median {res['median_pearson']:.3f}, "
        f"{res['genes_r_gt_0.3']} genes with r > 0.3 (of {res['n_genes']})\n"
    )


def _run_benchmark(args: argparse.Namespace) -> None:
    from hist_sd import _bench

    table = _bench.run_benchmark(args.out, data_dir=args.data_dir, methods=args.methods,
                                 n_genes=args.genes, protocols=args.protocols, mob=not args.no_mob,
                                 tumor=not args.no_tumor, levers=args.levers, epochs=args.epochs,
                                 n_jobs=args.jobs)
    sys.stdout.write(_bench.format_table(table) + "\n")
    if "tumor_labels" in table.attrs:
        labels = table.attrs["tumor_labels"]
        sys.stdout.write("\nExpression-derived tumour labels vs pathologists (AUC of tumor_score, accuracy of tumor):\n")
        sys.stdout.write(_bench.markdown(labels[["n_spots", "auc", "accuracy"]], index=True) + "\n")
        cv = table.attrs["tumor_labels_cv"]
        sys.stdout.write("\nThe recipe chosen on six labelled sections, scored on the seventh (AUC, accuracy):\n")
        sys.stdout.write(_bench.markdown(cv[["auc", "accuracy", "default_auc", "default_accuracy"]], index=True) + "\n")
        seg = table.attrs["tumor_segmentation"]
        sys.stdout.write("\nTumour segmentation from H&E, leave-one-patient-out (vs expression-derived labels):\n")
        cols = [c for c in ("method", "mean_auc", "ci95_low", "ci95_high", "mean_accuracy", "mean_dice",
                            "per_section_auc") if c in seg]
        sys.stdout.write(_bench.markdown(seg[cols]) + "\n")
    sys.stdout.write(f"total {table.attrs['total_seconds']:.0f} s\n")


def _check_predict(args: argparse.Namespace) -> None:
    from hist_sd.tl._slides import check_slides_args

    check_slides_args(args.slides, args.model, out=args.out, mpp=args.mpp, n_workers=args.workers)


def _run_predict(args: argparse.Namespace) -> None:
    from hist_sd._bench import markdown
    from hist_sd.tl._slides import SUMMARY_FILE, predict_slides

    table = predict_slides(args.slides, args.model, out=args.out, mpp=args.mpp, client=args.scheduler,
                           n_workers=args.workers, overwrite=args.overwrite)
    shown = table[["slide", "status", "n_tiles", "seconds", "error"]].astype(object)
    sys.stdout.write(markdown(shown.where(shown.notna(), "")) + "\n")
    sys.stdout.write(f"total {table.attrs['total_seconds']:.0f} s; results in {args.out}\n")
    failed = table.loc[table["status"] == "failed", "slide"].tolist()
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(table)} slides failed ({', '.join(failed[:5])}"
                           f"{', ...' if len(failed) > 5 else ''}); the errors are in {args.out / SUMMARY_FILE}")


# ----- hist-sd outcome (HiST's application module) -----
def _outcome_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    o = sub.add_parser("outcome", parents=[common],
                       help="whole slides + clinical table -> predicted maps -> cross-validated risk, scores.csv, KM")
    o.add_argument("slides_dir", metavar="SLIDES_DIR", help="folder of slides (.svs, .tif, .ndpi, ..., .jpg/.png)")
    o.add_argument("clinical_csv", metavar="CLINICAL.csv",
                   help="one row per slide: slide_id (file name without ending), case_id, survival_months, event "
                        "(or censorship), or a response column, and clinical covariates")
    o.add_argument("--model", required=True, metavar="MODEL", help="a saved expression model (hs.tl.train(...).save)")
    o.add_argument("--out", type=Path, required=True, metavar="DIR", help="results folder")
    o.add_argument("--task", choices=["survival", "response"], default="survival", help="default survival")
    o.add_argument("--clinical", type=_names, default=[], metavar="COLS",
                   help="comma-separated clinical columns joined before the head (one-hot)")
    o.add_argument("--folds", type=_count, default=5, help="patient-grouped folds (default 5)")
    o.add_argument("--epochs", type=_count, default=20, help="training epochs, fixed in advance (default 20)")
    o.add_argument("--workers", type=_count, default=2, help="worker processes for the slides (default 2)")
    o.add_argument("--seed", type=int, default=0, help="seed of folds and training (default 0)")
    o.add_argument("--overwrite", action="store_true", help="replace existing outputs")


def _check_outcome(args: argparse.Namespace) -> None:
    from hist_sd._bench_outcome import check_outcome_args

    check_outcome_args(args.slides_dir, args.clinical_csv, args.model, args.out, task=args.task,
                       clinical=args.clinical, n_folds=args.folds, overwrite=args.overwrite)


def _run_outcome(args: argparse.Namespace) -> None:
    from hist_sd._bench import markdown
    from hist_sd._bench_outcome import run_outcome_cli

    res = run_outcome_cli(args.slides_dir, args.clinical_csv, args.model, args.out, task=args.task,
                          clinical=args.clinical, n_folds=args.folds, epochs=args.epochs, n_workers=args.workers,
                          seed=args.seed, overwrite=args.overwrite)
    sys.stdout.write(f"{res['n_slides']} slides of {res['n_patients']} patients, {args.folds} patient-grouped folds:\n")
    sys.stdout.write(markdown(res["summary"], index=True) + "\n")
    sys.stdout.write(f"total {res['seconds']:.0f} s; scores in {args.out / 'scores.csv'}, figures: "
                     f"{', '.join(res['figures']) or 'none'}\n")


#: command -> (argument checks that need no data, the job)
_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None] | None, Callable[[argparse.Namespace], None]]] = {
    "main": (_check_main, _run_main),
    "benchmark": (None, _run_benchmark),
    "survival": (_check_survival, _run_survival),
    "predict": (_check_predict, _run_predict),
    "outcome": (_check_outcome, _run_outcome),
}


def _report(exc: BaseException, status: int, *, verbose: bool) -> int:
    """Write ``exc`` as one ``hist-sd: error:`` line (after its traceback with ``-v``); return ``status``."""
    if verbose:
        traceback.print_exception(exc, file=sys.stderr)
    if status == USAGE:
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}" + ("" if verbose else f" (run `{PROG} -v ...` for the traceback)")
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hist-sd``; returns the exit status (0 done, 1 the job failed, 2 unusable arguments)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help and --version print, then stop
        return int(exc.code or 0)
    except _UsageError as exc:
        return _report(exc, USAGE, verbose=False)
    check, run = _COMMANDS[args.command]
    try:
        if check is not None:
            check(args)
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        return _report(exc, USAGE, verbose=args.verbose)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("hist_sd").setLevel(logging.INFO)
    try:
        run(args)
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:  # noqa: BLE001 - the command line reports any failure as one line (-v: traceback)
        return _report(exc, FAILED, verbose=args.verbose)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
