"""Downstream biology on predicted expression against measured expression (her2st, leave-one-patient-out).

HiST is trained on one her2st patient's H&E sections (B: B4; C: C2-C6) with 1,200 spatially variable genes
selected on the other patients' sections, predicts the held-out patient's sections, and each downstream verb
(pseudo-bulk, CNV, tumour sub-clusters, hallmark / GO-BP enrichment) runs on the prediction and on the measured
expression of the same genes; see ``hist_sd._bench_downstream`` for the exact comparisons and baselines.
Features are cached in ``<out>/cache`` (and reused from there). The number of epochs is fixed in advance (100).

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/downstream.py --out results/downstream
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from hist_sd._bench_downstream import format_downstream, run_downstream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for downstream.csv, costs.csv, downstream.md")
    parser.add_argument("--data-dir", default=None, help="local data mirror (default $HIST_SD_DATA_DIR)")
    parser.add_argument("--genes", type=int, default=1200, help="predicted genes (spatially variable, chosen in-fold)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    res = run_downstream(args.out, data_dir=args.data_dir, n_genes=args.genes, epochs=args.epochs, seed=args.seed)
    print(format_downstream(res["sections"], res["costs"]))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; written {args.out}")


if __name__ == "__main__":
    main()
