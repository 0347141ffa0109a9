"""HiST's application module (outcome models on predicted expression maps), validated in three layers.

No TCGA slide pixels can be had on these machines, so:

- ``synthetic``: the whole chain on synthetic cohorts made from real her2st HiST predictions, with a survival signal
  planted in one gene in one region of the map; the module must recover it, a shuffled-label control must not;
- ``tcga``: the Cox head on real TCGA bulk RNA families (stand-in for pseudo-bulk) against lifelines' CoxPHFitter
  on the same input and published folds (BLCA, BRCA, LUAD; C-index within 0.02);
- ``cli``: ``hist-sd outcome SLIDES_DIR CLINICAL.csv --model MODEL --out DIR`` on the real SVS of the data mirror
  repeated as a toy cohort (needs ``synthetic`` first: it uses the HiST model that layer saves).

Usage (one command per layer; epochs are fixed here, never chosen on a reported fold)::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/outcome.py synthetic --out results/outcome
    HIST_SD_DATA_DIR=../shared/data python benchmarks/outcome.py tcga --out results/outcome
    HIST_SD_DATA_DIR=../shared/data python benchmarks/outcome.py cli --out results/outcome
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("layer", choices=["synthetic", "tcga", "cli"])
    p.add_argument("--out", type=Path, default=Path("results/outcome"))
    p.add_argument("--data-dir", default=os.environ.get("HIST_SD_DATA_DIR"))
    p.add_argument("--patients", type=int, default=300, help="synthetic patients (default 300, a TCGA cohort's size)")
    p.add_argument("--epochs", type=int, default=15, help="outcome network epochs (default 15; cli: 5)")
    p.add_argument("--hist-epochs", type=int, default=30, help="HiST epochs on her2st (default 30)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    from hist_sd import _bench_outcome as B
    from hist_sd._bench import markdown

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.layer == "synthetic":
        table = B.run_synthetic(out, data_dir=args.data_dir, n_patients=args.patients, epochs=args.epochs,
                                hist_epochs=args.hist_epochs)
        table.to_csv(out / "synthetic.csv", index=False)
        cols = ["labels", "method", "c_index_mean", "c_index_sd", "c_index_uno_mean", "pooled_c_index",
                "pooled_logrank_p", "risk_z_corr"]
        sys.stdout.write(markdown(table[cols]) + "\n" + json.dumps(table.attrs, default=str) + "\n")
    elif args.layer == "tcga":
        table = B.run_tcga_head(data_dir=args.data_dir)
        table.to_csv(out / "tcga_head.csv", index=False)
        summary = table.groupby("cohort")[["c_index_head", "c_index_lifelines", "c_index_mlp_head", "abs_diff",
                                           "max_abs_coef_diff"]].agg(["mean", "max"])
        sys.stdout.write(markdown(table.drop(columns=["head_seconds", "lifelines_seconds"])) + "\n\n")
        sys.stdout.write(summary.round(4).to_string() + "\n")
    else:
        data = Path(args.data_dir or "../shared/data")
        res = B.run_cli_layer(out, model=out / "hist_her2st.pt", svs=data / "wsi" / "CMU-1-Small-Region.svs",
                              epochs=min(args.epochs, 5))
        sys.stdout.write(markdown(res.pop("summary"), index=True) + "\n" + json.dumps(res, default=str) + "\n")
    sys.stdout.write(f"wall {time.perf_counter() - t0:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
