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
# # Whole-slide survival with G-HANet (TCGA bladder cancer)
#
# G-HANet (Wang et al., *IEEE TMI* 2025) predicts a patient's risk from the patient's whole-slide images. During
# training it also reconstructs six gene families (tumour suppressors, oncogenes, protein kinases, cell
# differentiation markers, transcription factors, cytokines and growth factors) from the slides' instance
# features, so that it learns histo-genomic associations; at prediction time it needs the slides only.
#
# This tutorial uses the TCGA bladder cancer cohort (BLCA) shipped with the data mirror: real HIPT region
# features of the diagnostic slides (one 192-d vector per 4096 px region), the MCAT survival and genomics table
# and the published 5-fold splits. It
#
# 1. loads the cohort as a `hs.io.Cohort` (patients AnnData + instances AnnData + splits);
# 2. trains G-HANet on the training patients of fold 0 and predicts the held-out patients from their slides;
# 3. scores the held-out risks with lifelines and draws Kaplan-Meier curves of the high- and low-risk groups;
# 4. cross-validates the mean-pooling Cox floor and a genomic reference on all five folds.
#
# This page was executed when the documentation was built: every table, score and figure below is what that
# run printed. It is a **quick run**: G-HANet trains for `EPOCHS` epochs (the package default is 20) on one
# fold, so its score is one fold's, from an under-trained model, and says little about the method; the
# benchmarks page has the full five-fold comparison.
#
# ```bash
# HIST_SD_DATA_DIR=/path/to/shared/data python docs/tutorials/04_survival_ghanet.py
# ```

# %%
from __future__ import annotations

import logging
import time

from lifelines.utils import concordance_index

import hist_sd as hs

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
hs.settings.verbosity = "info"  # hist_sd logs what it reads and trains
hs.settings.progress = False  # no progress bars in a static page

EPOCHS = 2  # a quick run (package default: hs.tl.SURVIVAL_DEFAULTS and hs.model.METHODS["ghanet"].epochs)
t_start = time.perf_counter()

# %% [markdown]
# ## 1. The cohort
#
# `hs.datasets.tcga` reads the cohort's table, the per-slide feature files and the splits (from the mirror
# named by `HIST_SD_DATA_DIR`). Patients without any feature file are dropped, and said so in the log.
# `patients.obs` holds the survival columns (`survival_months`, `event`) and clinical ones; `patients.X` the
# genomic profile (used by G-HANet as a training target only); `instances` one row per slide region.

# %%
blca = hs.datasets.tcga("blca")
print(blca)
print(f"EPOCHS = {EPOCHS}; default epochs of ghanet: {hs.model.METHODS['ghanet'].epochs}")
blca.patients.obs[["survival_months", "event", "n_slides", "n_instances"]].describe().round(1)

# %% [markdown]
# ## 2. G-HANet on fold 0
#
# `blca.fold(0)` gives the training and held-out patient ids of the published split. Everything `train_survival`
# learns (time bins, the genes of each family, standardisation, weights, the high/low risk threshold) comes from
# the training patients only.

# %%
train, test = blca.fold(0)
print(f"fold 0: {len(train)} training patients, {len(test)} held-out patients")
t0 = time.perf_counter()
model = hs.tl.train_survival(blca, method="ghanet", cases=train, epochs=EPOCHS, seed=0)
print(f"trained in {time.perf_counter() - t0:.0f} s")
hs.tl.predict_survival(blca, model, cases=test)  # obs["risk"], obs["risk_group"]; NaN outside `test`
held = blca.patients.obs.loc[test]
print(held["risk_group"].value_counts().to_string())

# %% [markdown]
# Harrell's C-index of the held-out risks, with lifelines (which reads `patients.obs` directly; a higher risk
# means an earlier event, so the score passed to lifelines is the negative risk):

# %%
c = concordance_index(held["survival_months"], -held["risk"], held["event"])
print(f"G-HANet ({EPOCHS} epochs), fold 0 held-out patients: C-index {c:.3f} "
      f"({int(held['event'].sum())} events in {len(held)} patients)")

# %%
hs.pl.kaplan_meier(blca.patients[test], key="risk", threshold=model.threshold, at_risk=True,
                   title=f"TCGA-BLCA, fold 0 held out ({len(test)} patients): G-HANet risk groups", show=True)

# %% [markdown]
# ## 3. Five folds: the linear floor and a genomic reference
#
# `hs.tl.cross_validate_survival` trains and scores each method on every fold with the same patients and
# features. `meanpool` (the patient's mean instance feature -> PCA -> Cox) is the floor a slide-level method has
# to beat; `coxgenomics` reads the genome at test time (a reference, not a slide-only method). Both are Cox
# fits and take seconds.

# %%
t0 = time.perf_counter()
res = hs.tl.cross_validate_survival(blca, methods=["meanpool", "coxgenomics"], seeds=[0])
print(f"cross-validation: {time.perf_counter() - t0:.0f} s")
res.summary.round(3)

# %%
fold0 = res.scores.query("fold == 0").set_index("method")["c_index"]
print(f"fold 0, same held-out patients: G-HANet ({EPOCHS} epochs) {c:.3f}; "
      + "; ".join(f"{m} {v:.3f}" for m, v in fold0.items()))
print(f"total {time.perf_counter() - t_start:.0f} s")
