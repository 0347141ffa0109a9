"""Command line: ``hist-sd main`` (train, predict a held-out section, write results) and ``hist-sd benchmark``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hist-sd", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("main", help="train HiST on her2st image sections, predict a held-out patient's section")
    m.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results)")
    m.add_argument("--data-dir", default=None, help="local data mirror (default: $HIST_SD_DATA_DIR or download)")
    m.add_argument("--held-out", default="B4", help="held-out section; its patient is left out of training")
    m.add_argument("--genes", type=int, default=50, help="number of spatially variable genes")
    m.add_argument("--epochs", type=int, default=None, help="training epochs (default: the method's default)")
    m.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    b = sub.add_parser("benchmark", help="cross-validated comparison of HiST, ablations and baselines")
    b.add_argument("--out", type=Path, default=Path("results/benchmark"))
    b.add_argument("--data-dir", default=None)
    b.add_argument("--methods", nargs="+", default=None)
    b.add_argument("--protocols", nargs="+", default=["lopo", "loso"], choices=["lopo", "loso"])
    b.add_argument("--genes", type=int, default=50)
    b.add_argument("--epochs", type=int, default=None)
    b.add_argument("--no-mob", action="store_true", help="skip the mouse olfactory bulb")
    b.add_argument("--no-tumor", action="store_true", help="skip tumour labels and tumour segmentation")
    b.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each; default 2)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hist-sd``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    logging.getLogger("hist_sd").setLevel(logging.INFO)
    from hist_sd import _bench

    if args.command == "main":
        res = _bench.run_main(args.out, data_dir=args.data_dir, held_out=args.held_out, n_genes=args.genes,
                              epochs=args.epochs, overwrite=args.overwrite)
        sys.stdout.write(json.dumps(res, indent=2, default=str) + "\n")
        sys.stdout.write(
            f"held-out {res['held_out']}: mean PCC {res['mean_pearson']:.3f}, median {res['median_pearson']:.3f}, "
            f"{res['genes_r_gt_0.3']} genes with r > 0.3 (of {res['n_genes']})\n"
        )
        return 0
    if args.command == "benchmark":
        table = _bench.run_benchmark(args.out, data_dir=args.data_dir, methods=args.methods,
                                     n_genes=args.genes, protocols=args.protocols, mob=not args.no_mob,
                                     tumor=not args.no_tumor, epochs=args.epochs, n_jobs=args.jobs)
        sys.stdout.write(_bench.format_table(table) + "\n")
        if "tumor_labels" in table.attrs:
            labels = table.attrs["tumor_labels"]
            sys.stdout.write("\nExpression-derived tumour labels vs pathologists (AUC of tumor_score, accuracy of tumor):\n")
            sys.stdout.write(_bench.markdown(labels[["n_spots", "auc", "accuracy"]], index=True) + "\n")
            seg = table.attrs["tumor_segmentation"]
            sys.stdout.write("\nTumour segmentation from H&E, leave-one-patient-out (vs expression-derived labels):\n")
            cols = [c for c in ("method", "mean_auc", "ci95_low", "ci95_high", "mean_accuracy", "mean_dice",
                                "per_section_auc") if c in seg]
            sys.stdout.write(_bench.markdown(seg[cols]) + "\n")
        sys.stdout.write(f"total {table.attrs['total_seconds']:.0f} s\n")
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
