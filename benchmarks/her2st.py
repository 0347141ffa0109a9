"""The her2st + mouse olfactory bulb benchmark: HiST, its ablations and the baselines in one harness.

Leave-one-patient-out and leave-one-section-out on the her2st image sections (B4, C2-C6) with the top 50
spatially variable genes chosen inside each fold, leave-one-section-out on the mouse olfactory bulb, the
expression-derived tumour labels against the pathologists and tumour segmentation from H&E. Same as
``hist-sd benchmark``.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/her2st.py --out results/benchmark
"""

from __future__ import annotations

import sys

from hist_sd._cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
