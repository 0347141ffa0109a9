# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tumour regions: from expression, then from H&E alone
#
# HiST's second task is tumour segmentation: which spots of a slide are tumour. Training it needs tumour
# labels for the training spots, and a pathologist's spot annotation is rarely available. hist_sd derives
# the labels from the expression itself, by copy-number inference (`hs.tl.tumor_labels`, Cottrazm-like:
# tumour cells carry copy-number changes, normal cells do not), and then trains HiST to find the same
# regions from the H&E image.
#
# 1. Label the spots of her2st section B1 from its counts and compare with the pathologist's annotation.
# 2. Label the six her2st sections with an image the same way, train HiST's segmentation task on patient C
#    and predict the tumour of patient B's section B4 from its H&E image.
#
# This page was executed when the documentation was built: every table, score and figure below is what that
# run printed. It is a **quick run** (`EPOCHS` below is a tenth of the package default) that takes a few minutes
# on 2 CPU cores, most of it in the patch encoder; each `tumor_labels` call takes seconds.
#
# ```bash
# HIST_SD_DATA_DIR=/path/to/shared/data python docs/tutorials/02_tumour_regions.py
# ```

# %%
from __future__ import annotations

import logging
import time

import infercnvpy as cnv
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import hist_sd as hs

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
hs.settings.verbosity = "info"  # hist_sd logs every key it writes
hs.settings.progress = False  # no progress bars in a static page (infercnvpy's included)

EPOCHS = 40  # small on purpose: a few minutes on 2 CPU cores (package default for HiST: 400)
TRAIN = ["C2", "C3", "C4", "C5", "C6"]  # patient C
TEST = "B4"  # patient B
TUMOUR = ("invasive cancer", "cancer in situ")
t_start = time.perf_counter()

# %% [markdown]
# ## 1. Tumour labels from expression (B1, pathologist-annotated)
#
# B1 has counts and spots but no H&E image in her2st; the pathologist's label of each spot is in
# `obs["label"]`. `hs.tl.tumor_labels` needs only the raw counts and the genes' genomic positions
# (`hs.datasets.gene_positions("hg38")`, read from the mirror or downloaded). Without a given reference,
# the non-malignant reference spots are the 20 % with the strongest immune/stromal and weakest
# epithelial marker expression.

# %%
b1 = hs.datasets.her2st(["B1"], scale_factors=None)["B1"]
table = b1.tables["table"]
print(table.obs["label"].value_counts(dropna=False).to_string())

t0 = time.perf_counter()
hs.tl.tumor_labels(b1, seed=0)
print(f"tumor_labels: {time.perf_counter() - t0:.1f} s; {int(table.obs['tumor'].sum())} of {table.n_obs} spots called tumour")
print("written:", [c for c in table.obs.columns if c.startswith("tumor")], "obsm['X_cnv']", table.obsm["X_cnv"].shape)

# %% [markdown]
# The pathologist's truth: invasive cancer and cancer in situ are tumour; "undetermined" and unlabelled
# spots are left out (NaN), which `hs.tl.evaluate_segmentation` skips. The continuous `tumor_score` gets an
# AUC; the boolean call `tumor` gets Dice, sensitivity, specificity, ... at the threshold 0.5.

# %%
label = table.obs["label"].astype(object)
truth = label.isin(TUMOUR).astype(float)
truth[label.isna() | (label == "undetermined")] = np.nan
table.obs["pathologist_tumor"] = truth

by_score = hs.tl.evaluate_segmentation(b1, pred="tumor_score", truth="pathologist_tumor")
by_call = hs.tl.evaluate_segmentation(b1, pred="tumor", truth="pathologist_tumor")
print(f"B1 against the pathologist: AUC of tumor_score {by_score['auc'].iloc[0]:.3f}; "
      f"call: Dice {by_call['dice'].iloc[0]:.3f}, sensitivity {by_call['sensitivity'].iloc[0]:.3f}, "
      f"specificity {by_call['specificity'].iloc[0]:.3f}, accuracy {by_call['accuracy'].iloc[0]:.3f}")
print(by_call.round(3).to_string())

# %%
hs.pl.spatial(
    b1, obs=["label", "tumor_score", "tumor"], ncols=3, show=True,
    title=["B1: pathologist's label", "B1: CNV tumour score (from counts)", "B1: tumour call (from counts)"],
)

# %% [markdown]
# The CNV profiles are where infercnvpy expects them (`obsm["X_cnv"]`, `uns["cnv"]["chr_pos"]`), so its
# plots work unchanged; grouped by the tumour call, the tumour spots show the gains and losses that the
# reference spots lack (`groupby="tumor_cnv_cluster"` shows the CNV clusters instead).

# %%
table.obs["tumor_call"] = pd.Categorical(np.where(table.obs["tumor"], "tumour", "non-tumour"))
cnv.pl.chromosome_heatmap(table, groupby="tumor_call", show=False)
plt.show()

# %% [markdown]
# ## 2. Tumour segmentation from H&E
#
# Label the six sections with an image (no pathologist annotation exists for them), compute their patch
# features, train HiST's segmentation task (`task="tumor"`: masked binary cross-entropy against
# `obs["tumor"]`) on patient C, and predict the tumour probability of B4 into `obs["hist_tumor"]`.

# %%
sdatas = hs.datasets.her2st([*TRAIN, TEST], images_only=True)
t0 = time.perf_counter()
for name, sdata in sdatas.items():
    hs.tl.tumor_labels(sdata, seed=0)
    hs.pp.features(sdata, progress=False)
    t = sdata.tables["table"]
    print(f"{name}: {t.n_obs} spots, {t.obs['tumor'].mean():.0%} called tumour from expression")
print(f"labels + features: {time.perf_counter() - t0:.0f} s")

# %%
t0 = time.perf_counter()
model = hs.tl.train({n: sdatas[n] for n in TRAIN}, task="tumor", epochs=EPOCHS, seed=0, progress=False)
print(f"trained in {time.perf_counter() - t0:.0f} s: {model}")
hs.tl.predict(sdatas[TEST], model)
b4 = sdatas[TEST].tables["table"]
print("hist_tumor: min {:.3f}, median {:.3f}, max {:.3f}".format(*np.quantile(b4.obs["hist_tumor"], [0, 0.5, 1])))

# %% [markdown]
# Score the H&E prediction of B4 against B4's expression-derived labels (the best truth available for it).
# For reference, the training sections are scored too (in-sample: an upper bound, not a result).

# %%
seg = hs.tl.evaluate_segmentation(sdatas[TEST], pred="hist_tumor", truth="tumor")
print(f"{TEST} (held-out patient): AUC {seg['auc'].iloc[0]:.3f}, Dice {seg['dice'].iloc[0]:.3f}, "
      f"IoU {seg['iou'].iloc[0]:.3f}, accuracy {seg['accuracy'].iloc[0]:.3f}")
for name in TRAIN:
    hs.tl.predict(sdatas[name], model)
train_seg = hs.tl.evaluate_segmentation({n: sdatas[n] for n in TRAIN}, pred="hist_tumor", truth="tumor", mean_row=True)
print("training sections (in-sample):")
print(train_seg[["n_spots", "n_tumor", "auc", "dice", "iou"]].round(3).to_string())

# %%
hs.pl.spatial(
    sdatas[TEST], obs=["tumor_score", "tumor", "hist_tumor"], ncols=3, show=True,
    title=[f"{TEST}: CNV tumour score (from counts)", f"{TEST}: tumour call (from counts)",
           f"{TEST}: tumour probability from H&E (held out)"],
)
print(f"total {time.perf_counter() - t_start:.0f} s")
