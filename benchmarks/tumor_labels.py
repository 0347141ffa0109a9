"""Expression-derived tumour labels (``hs.tl.tumor_labels``) against the her2st pathologist annotation.

For each of the seven annotated her2st sections (B1, C1, D1, E1, F1, G2, H1) the labels are computed from the
counts alone and compared with the pathologist: truth = "invasive cancer" or "cancer in situ"; "undetermined" and
unlabelled spots are left out. Also part of ``hist-sd benchmark``.

With ``--cv`` it also validates the recipe leave-one-labelled-section-out (``hist_sd._bench_tumor``): for each
section the settings (window size, reference fraction, noise threshold, tumour core, marker weight, smoothing,
clusters, call threshold) are chosen on the other sections and scored on it, next to today's defaults.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/tumor_labels.py --out results/tumor_labels [--cv]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from hist_sd._bench import markdown, run_tumor_labels
from hist_sd._bench_tumor import run_tumor_labels_cv
from hist_sd.datasets._her2st import HER2ST_LABELLED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for tumor_labels.csv")
    parser.add_argument("--sections", nargs="*", default=list(HER2ST_LABELLED))
    parser.add_argument("--data-dir", default=None, help="local data mirror (default $HIST_SD_DATA_DIR)")
    parser.add_argument("--window-size", type=int, default=100)
    parser.add_argument("--cv", action="store_true", help="also tune the recipe leave-one-labelled-section-out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    df = run_tumor_labels(args.sections, data_dir=args.data_dir, window_size=args.window_size)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "tumor_labels.csv"
    df.to_csv(path)
    print(markdown(df, index=True))
    print(f"mean AUC {df.loc['mean', 'auc']:.3f} (target >= 0.85); written {path}")
    if args.cv:
        cv = run_tumor_labels_cv(data_dir=args.data_dir, sections=args.sections)
        path = args.out / "tumor_labels_cv.csv"
        cv.to_csv(path)
        print("\nLeave-one-labelled-section-out (settings chosen on the other sections):")
        shown = cv.astype(object)
        shown.loc["mean"] = shown.loc["mean"].where(cv.loc["mean"].notna(), "")  # the other rows keep None
        print(markdown(shown, index=True))
        print(
            f"mean held-out AUC {cv.loc['mean', 'auc']:.3f} (defaults {cv.loc['mean', 'default_auc']:.3f}), accuracy "
            f"{cv.loc['mean', 'accuracy']:.3f} (defaults {cv.loc['mean', 'default_accuracy']:.3f}); "
            f"{cv.attrs['n_settings']} settings, {cv.attrs['seconds']:.0f} s. Chosen on all sections: "
            f"{cv.attrs['chosen_on_all']} (in-sample AUC {cv.attrs['in_sample_auc']:.3f}); written {path}"
        )


if __name__ == "__main__":
    main()
