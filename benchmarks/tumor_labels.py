"""Expression-derived tumour labels (``hs.tl.tumor_labels``) against the her2st pathologist annotation.

For each of the seven annotated her2st sections (B1, C1, D1, E1, F1, G2, H1) the labels are computed from the
counts alone and compared with the pathologist: truth = "invasive cancer" or "cancer in situ"; spots labelled
"undetermined" or without a label are left out. Reported per section: AUC of ``obs["tumor_score"]``, and
accuracy / sensitivity / specificity / Dice of the boolean call ``obs["tumor"]``, the runtime, and the mean.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/tumor_labels.py --out results/tumor_labels
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

import hist_sd as hs
from hist_sd.datasets._her2st import HER2ST_LABELLED

TUMOUR_LABELS = ("invasive cancer", "cancer in situ")
EXCLUDED_LABELS = ("undetermined",)


def pathologist_truth(labels: pd.Series) -> pd.Series:
    """True for cancer, False for other tissue, NaN for undetermined / unlabelled spots."""
    lab = labels.astype(object)
    truth = lab.isin(TUMOUR_LABELS).astype(object)
    truth[lab.isna() | lab.isin(EXCLUDED_LABELS)] = np.nan
    return truth


def run(sections: list[str], *, data_dir: str | None = None, window_size: int = 100) -> pd.DataFrame:
    rows = []
    for section in sections:
        sdata = hs.datasets.her2st(section, data_dir=data_dir, scale_factors=None)[section]
        table = sdata.tables["table"]
        t0 = time.perf_counter()
        hs.tl.tumor_labels(table, window_size=window_size)
        seconds = time.perf_counter() - t0
        table.obs["pathologist_tumor"] = pathologist_truth(table.obs["label"])
        by_score = hs.tl.evaluate_segmentation(table, pred="tumor_score", truth="pathologist_tumor")
        by_call = hs.tl.evaluate_segmentation(table, pred="tumor", truth="pathologist_tumor")
        row = {
            "section": section,
            "n_spots": int(by_call["n_spots"].iloc[0]),
            "tumor_fraction": float(by_call["n_tumor"].iloc[0] / by_call["n_spots"].iloc[0]),
            "called_fraction": float(table.obs.loc[table.obs["pathologist_tumor"].notna(), "tumor"].mean()),
            "auc": float(by_score["auc"].iloc[0]),
            "accuracy": float(by_call["accuracy"].iloc[0]),
            "sensitivity": float(by_call["sensitivity"].iloc[0]),
            "specificity": float(by_call["specificity"].iloc[0]),
            "dice": float(by_call["dice"].iloc[0]),
            "seconds": seconds,
        }
        rows.append(row)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    df = pd.DataFrame(rows).set_index("section")
    df.loc["mean"] = df.mean(axis=0)
    return df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for tumor_labels.csv")
    parser.add_argument("--sections", nargs="*", default=list(HER2ST_LABELLED))
    parser.add_argument("--data-dir", default=None, help="local data mirror (default $HIST_SD_DATA_DIR)")
    parser.add_argument("--window-size", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    df = run(args.sections, data_dir=args.data_dir, window_size=args.window_size)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tumor_labels.csv"
    df.to_csv(path)
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 160, "display.max_columns", 20):
        print(df)
    print(f"mean AUC {df.loc['mean', 'auc']:.3f} (target >= 0.85); written {path}")


if __name__ == "__main__":
    main()
