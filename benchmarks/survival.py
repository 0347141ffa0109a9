"""The whole-slide survival benchmark (same as ``hist-sd survival``).

G-HANet, its ablations, MIL baselines, the linear floor and genomic references on the five bundled TCGA cohorts
(real HIPT region features, published 5-fold splits).

Every method is trained for a number of epochs fixed in advance on each fold's training patients and scored once
on the held-out fold.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/survival.py --out results/survival
"""

from __future__ import annotations

import sys

from hist_sd._cli import main

if __name__ == "__main__":
    sys.exit(main(["survival", *sys.argv[1:]]))
