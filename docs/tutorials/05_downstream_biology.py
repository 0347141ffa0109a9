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
# # Downstream biology on predicted expression (her2st)
#
# A predicted expression table is only useful if the biology read from it matches the biology read from measured
# expression. This tutorial trains HiST on two sections of one her2st patient (C2, C3), predicts ~1,100 genes of
# a section of another patient (B4) from its H&E image, and then runs every downstream verb twice on B4, once on
# the prediction (`key="hist_pred"`, the default) and once on the measured counts (`key=None`), so that the two
# results sit side by side:
#
# 1. pseudo-bulk (HiST's "pseudo-RNA-seq") against the measured bulk and the training-mean baseline;
# 2. tumour spots from the measured expression (copy-number inference), shared by both sides;
# 3. copy-number inference (infercnvpy) on predicted and measured expression;
# 4. tumour sub-clusters (heterogeneity) on both, compared by the adjusted Rand index;
# 5. hallmark gene-set enrichment of tumour vs non-tumour spots on both;
# 6. Grad-CAM maps of what the network looked at for one gene.
#
# This page was executed when the documentation was built: every table, score and figure below is what that
# run printed. It is a **quick run**: HiST trains for `EPOCHS` epochs on two sections (the package default is
# 400 epochs), so the prediction is weak. Read the comparisons with that in mind; the benchmarks page
# ("Downstream biology: predicted against measured on held-out sections", 100 epochs, both patients held out in
# turn) found that predictions recover **little** of the measured biology so far: the pseudo-bulk does not beat a
# constant profile of training means, CNV scores correlate weakly, sub-clusters agree at chance level and
# enrichment is little beyond chance.
#
# ```bash
# HIST_SD_DATA_DIR=/path/to/shared/data python docs/tutorials/05_downstream_biology.py
# ```

# %%
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

import hist_sd as hs

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
hs.settings.verbosity = "warning"  # keep the page short: only hist_sd's warnings
hs.settings.progress = False  # no progress bars in a static page

EPOCHS = 100  # the benchmark's fixed number (package default for HiST: 400); ~15 s here
N_GENES = 1100  # CNV inference and enrichment need >= 1,000 genes
TRAIN = ["C2", "C3"]  # patient C
TEST = "B4"  # patient B: never seen in training
t_start = time.perf_counter()

# %% [markdown]
# ## 1. Sections, features, genes, a model and its prediction
#
# The same steps as in the first tutorial, in one cell: load the sections, encode a patch around every spot
# (EfficientNet-Lite0, ImageNet weights), choose the genes on the **training sections only** (the `N_GENES` with
# the highest median Moran's I, significant in half of the sections, detected in at least 5% of the spots),
# train HiST and predict the held-out section.

# %%
sdatas = hs.datasets.her2st([*TRAIN, TEST], images_only=True)
t0 = time.perf_counter()
for sdata in sdatas.values():
    hs.pp.features(sdata, progress=False)
print(f"features: {time.perf_counter() - t0:.0f} s")
ranked = hs.pp.spatial_genes([sdatas[n] for n in TRAIN], n_top=N_GENES, min_moran=0.0, max_pval=1.0,
                             min_sections=0.5, min_cells=0.05, progress=False)
genes = ranked.index[ranked["selected"]].tolist()
t0 = time.perf_counter()
model = hs.tl.train({n: sdatas[n] for n in TRAIN}, genes=genes, epochs=EPOCHS, seed=0, progress=False)
print(f"{len(genes)} genes; HiST trained for {EPOCHS} epochs in {time.perf_counter() - t0:.0f} s")
hs.tl.predict(sdatas[TEST], model)
b4 = sdatas[TEST].tables["table"]
shared = [g for g in model.genes if g in b4.var_names]  # predicted genes that B4 also measures
scores = hs.tl.evaluate(sdatas[TEST])
summary = hs.tl.summarize_scores(scores)
print(f"{TEST}: {b4.n_obs} spots, mean per-gene Pearson r over spots {summary['mean']:.3f} "
      f"({summary['n_above']} of {summary['n']} genes with r > 0.3); {len(shared)} predicted genes are measured")

# %% [markdown]
# ## 2. Pseudo-bulk
#
# `hs.tl.pseudobulk` averages the predicted expression of the in-tissue spots into one sample (or one per group
# with `groupby=`); with `key=None` it does the same from the measured counts.
# `hs.tl.evaluate_bulk` correlates the two profiles across genes. Such correlations are dominated by how highly
# each gene is expressed on average, so a constant profile of the training means already scores high;
# `baseline=model` reports that baseline beside the prediction and the correlation of the two profiles'
# deviations from it (`pearson_delta`), which is what the prediction adds.

# %%
bulk = hs.tl.pseudobulk(sdatas[TEST])
truth = hs.tl.pseudobulk(sdatas[TEST], key=None)
bulk_scores = hs.tl.evaluate_bulk(bulk, truth, baseline=model)
bulk_scores.round(3)

# %% [markdown]
# ## 3. Tumour spots from measured expression
#
# `hs.tl.tumor_labels` infers copy-number profiles from the measured counts and calls the spots whose profile
# departs from a reference cluster "tumour" (`obs["tumor"]`). These labels, and the non-tumour spots as the CNV
# reference, are used for both the predicted and the measured analyses below, so that the comparisons isolate the
# expression.

# %%
hs.tl.tumor_labels(sdatas[TEST])
print(b4.obs["tumor"].value_counts().to_string())

# %% [markdown]
# ## 4. Copy-number inference on predicted and measured expression
#
# `hs.tl.cnv` runs infercnvpy on the predicted genes (placed on the genome by their hg38 positions) with the
# non-tumour spots as reference; `key=None` on the measured expression. Both sides use the same genes: the
# predicted genes that B4 also measures (`shared`). Each writes a per-spot score to `obs["<key_added>_score"]`;
# we correlate the two over the spots. Both sides are measured against the same reference spots, whose profiles
# are close to the reference by construction, so part of any correlation over all spots is the tumour/non-tumour
# split itself; the correlation over the tumour spots alone is the stricter number.

# %%
reference = ~b4.obs["tumor"].astype(bool)
hs.tl.cnv(sdatas[TEST], genes=shared, reference=reference, key_added="cnv_pred")
hs.tl.cnv(sdatas[TEST], key=None, genes=shared, reference=reference, key_added="cnv_measured")
cnv_r = float(np.corrcoef(b4.obs["cnv_pred_score"], b4.obs["cnv_measured_score"])[0, 1])
in_tumour = b4.obs.loc[~reference, ["cnv_pred_score", "cnv_measured_score"]]
cnv_r_tumour = float(np.corrcoef(in_tumour.T.to_numpy())[0, 1])
print(f"CNV score per spot, predicted vs measured: Pearson r {cnv_r:.3f} over all {b4.n_obs} spots, "
      f"{cnv_r_tumour:.3f} over the {len(in_tumour)} tumour spots")
b4.obs.groupby("tumor", observed=True)[["cnv_pred_score", "cnv_measured_score"]].mean().round(4)

# %% [markdown]
# ## 5. Heterogeneity: tumour sub-clusters
#
# `hs.tl.heterogeneity` clusters the tumour spots (Leiden on the most variable genes); the adjusted Rand index
# (ARI) says how well the predicted sub-clusters match the measured ones (0: chance, 1: identical).

# %%
hs.tl.heterogeneity(sdatas[TEST], genes=shared, key_added="sub_pred")
hs.tl.heterogeneity(sdatas[TEST], key=None, genes=shared, key_added="sub_measured")
tumour = b4.obs["tumor"].astype(bool)
sub = b4.obs.loc[tumour, ["sub_pred", "sub_measured"]].astype(str)
ari = adjusted_rand_score(sub["sub_measured"], sub["sub_pred"])
print(f"{int(tumour.sum())} tumour spots: {sub['sub_pred'].nunique()} predicted and {sub['sub_measured'].nunique()} "
      f"measured sub-clusters, ARI {ari:.3f}")

# %% [markdown]
# ## 6. Hallmark enrichment of tumour vs non-tumour spots
#
# `hs.tl.enrichment` scores gene sets (here the MSigDB hallmarks, an offline copy) between the groups of
# `groupby`, with over-representation of the differentially expressed genes (`ora`) and a univariate linear model
# of the expression (`ulm`, decoupler). We compare the significant (group, term) pairs of the two sides.

# %%
def significant(terms: pd.DataFrame) -> set[tuple[str, str, str]]:
    hit = terms[(terms["padj"] < 0.05) & (terms["score"] > 0)]
    return set(zip(hit["method"], hit["group"].astype(str), hit["term"], strict=True))


terms_pred = hs.tl.enrichment(sdatas[TEST], groupby="tumor", genes=shared, key_added="enrich_pred")
terms_meas = hs.tl.enrichment(sdatas[TEST], groupby="tumor", key=None, genes=shared, key_added="enrich_measured")
rows = []
for method in ("ora", "ulm"):
    p = {t for t in significant(terms_pred) if t[0] == method}
    m = {t for t in significant(terms_meas) if t[0] == method}
    rows.append({"method": method, "significant, predicted": len(p), "significant, measured": len(m),
                 "shared": len(p & m), "Jaccard": len(p & m) / max(len(p | m), 1)})
pd.DataFrame(rows).round(3)

# %% [markdown]
# ## 7. What did the network look at? Grad-CAM
#
# `hs.tl.explain` computes Grad-CAM maps of the prediction of one gene at several layers of the network
# (`obs["hist_gradcam_<layer>"]`, scaled to [0, 1]); `hs.pl.explain` shows the predicted gene beside them. We
# take the gene predicted best on B4.

# %%
best = scores.dropna()["gene"].iloc[0]
hs.tl.explain(model, sdatas[TEST], gene=best)
hs.pl.explain(sdatas[TEST], show=True)

# %% [markdown]
# ## Summary
#
# The numbers of this quick run, in one place. A positive `pearson_delta`, CNV correlation, ARI or Jaccard here
# is from one section and one under-trained model; the benchmark (both patients held out, 100 epochs, random and
# training-mean baselines beside every number) is where to judge how much biology the prediction carries, and
# it found little.

# %%
row = bulk_scores.iloc[0]
print(f"pseudo-bulk r {row['pearson']:.3f} (training mean {row['baseline_pearson']:.3f}, "
      f"deviations {row['pearson_delta']:.3f}); CNV score r {cnv_r:.3f} (tumour spots {cnv_r_tumour:.3f}); "
      f"sub-cluster ARI {ari:.3f}; "
      f"hallmark ULM Jaccard {rows[1]['Jaccard']:.3f}")
print(f"total {time.perf_counter() - t_start:.0f} s")
