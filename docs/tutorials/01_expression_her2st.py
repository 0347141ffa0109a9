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
# # Predicting spatial gene expression from H&E with HiST (her2st)
#
# This tutorial trains HiST on the H&E sections of one her2st patient (C2-C6, five serial sections of one
# HER2+ breast tumour), predicts the expression of the one section of another patient (B4) from its
# H&E image alone, scores the prediction against the measured expression, and finally applies the same
# model to the bare JPEG of B4, tiled like a slide without any spatial transcriptomics.
#
# This page was executed when the documentation was built: every table, score and figure below is what that
# run printed. It is a **quick run**: the number of training epochs is deliberately small (`EPOCHS` below) so
# that it finishes in a few minutes on 2 CPU cores; the package default for HiST is 400 epochs
# (`hs.model.METHODS["hist"].epochs`). Run it yourself as a script or as a notebook:
#
# ```bash
# HIST_SD_DATA_DIR=/path/to/shared/data python docs/tutorials/01_expression_her2st.py
# jupytext --to notebook docs/tutorials/01_expression_her2st.py   # or open it as a notebook
# ```
#
# `HIST_SD_DATA_DIR` points to a local mirror of the public data; without it `hs.datasets.her2st` downloads
# the files from GitHub (almaan/her2st at a pinned commit, sha256-checked, cached). The saved model goes to
# `$HIST_SD_TUTORIAL_OUT` (default: a folder in the system's temporary directory).

# %%
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import squidpy as sq

import hist_sd as hs

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
hs.settings.verbosity = "info"  # hist_sd logs every key it writes
hs.settings.progress = False  # no progress bars in a static page

OUT = Path(os.environ.get("HIST_SD_TUTORIAL_OUT", tempfile.gettempdir())) / "hist_sd_tutorial" / "01_expression"
OUT.mkdir(parents=True, exist_ok=True)
EPOCHS = 40  # small on purpose: a few minutes on 2 CPU cores (package default for HiST: 400)
N_GENES = 50
TRAIN = ["C2", "C3", "C4", "C5", "C6"]  # patient C
TEST = "B4"  # patient B: never seen in training
t_start = time.perf_counter()

# %% [markdown]
# ## 1. Load the sections
#
# `hs.datasets.her2st` returns `{section: SpatialData}`. Each SpatialData holds the H&E image
# (`"{section}_full_image"`, a multiscale `(c, y, x)` uint8 image), the spot circles (`"{section}"`) and the
# table `"table"`: raw counts in `.X`, spot centres in pixels of the image in `obsm["spatial"]`, the legacy ST
# array coordinates in `obs["array_row"]`/`obs["array_col"]`, and the scale (µm per pixel, spot size) in
# `uns["hist_sd"]`.

# %%
sdatas = hs.datasets.her2st([*TRAIN, TEST], images_only=True)
for name, sdata in sdatas.items():
    table = sdata.tables["table"]
    print(f"{name}: {table.n_obs} spots x {table.n_vars} genes, patient {table.obs['patient'].iloc[0]}, "
          f"{table.uns['hist_sd']['mpp']:.4f} µm/px")
sdatas[TEST]

# %% [markdown]
# ## 2. Patch features
#
# `hs.pp.features` cuts a patch of the spot's diameter (100 µm for legacy ST) around every spot, resizes it
# to the encoder's input and encodes it. The default encoder is EfficientNet-Lite0 with ImageNet weights
# (1280-d features); `encoder="ctranspath"` with `weights=` a local checkpoint gives the paper's
# pathology encoder. The features land in `obsm["X_hist"]` and the encoder settings in
# `uns["X_hist"]["params"]`.

# %%
t0 = time.perf_counter()
for sdata in sdatas.values():
    hs.pp.features(sdata, progress=False)
print(f"features: {time.perf_counter() - t0:.0f} s for {sum(s.tables['table'].n_obs for s in sdatas.values())} spots")
b4 = sdatas[TEST].tables["table"]
print("X_hist", b4.obsm["X_hist"].shape, "encoder:", b4.uns["X_hist"]["params"]["encoder"])

# %% [markdown]
# ## 3. Genes to predict
#
# HiST predicts spatially variable genes: `hs.pp.spatial_genes` computes Moran's I of every gene on a
# 15-nearest-neighbour graph in each section. We select them on the **training patient's sections only**
# (selecting on the test section would leak its expression into the model).
#
# HiST's own rule (median Moran's I > 0.4 and significant in every section) was set on Visium sections with
# thousands of spots. On small legacy ST sections (~300-700 spots, 200 µm apart) a 15-neighbour graph spans
# two rings of spots and Moran's I values are lower, so that rule selects few or no genes. Here, as in
# `hs.tl.cross_validate`, every gene with a positive Moran's I in every section is a candidate
# (`min_moran=0`, `max_pval=1`) and the `n_top` genes with the highest median I are kept.

# %%
ranked = hs.pp.spatial_genes([sdatas[n] for n in TRAIN], min_moran=0.0, max_pval=1.0, n_top=N_GENES, progress=False)
genes = ranked.index[ranked["selected"]].tolist()
print(f"{len(genes)} genes, top 10 by median Moran's I:")
print(ranked.loc[genes[:10], ["median_moran", "min_moran", "n_sections"]].round(3))

# %% [markdown]
# ## 4. Train HiST on patient C
#
# `hs.tl.train` places every spot on its grid (the layout of `hs.pp.grid`), turns the features into a
# `(C, H, W)` map per slide, and trains the attention U-Net with a ConvMixer bottleneck on the standardised log-normalised
# expression (masked MSE over the spots). `preset="compact"` (the default) is the CPU-sized network;
# `preset="paper"` has the published widths. The returned `HistModel` knows its genes, feature key, encoder and grid settings.

# %%
t0 = time.perf_counter()
model = hs.tl.train({n: sdatas[n] for n in TRAIN}, genes=genes, epochs=EPOCHS, seed=0, progress=False)
print(f"trained in {time.perf_counter() - t0:.0f} s: {model}")
print(f"loss: first epoch {model.history[0]:.3f}, last epoch {model.history[-1]:.3f}")

# %% [markdown]
# ## 5. Predict the held-out section and score it
#
# `hs.tl.predict` writes the predictions to `obsm["hist_pred"]` (spots x model genes) with the gene names in
# `uns["hist_pred"]["genes"]`. `hs.tl.evaluate` correlates predicted and measured expression gene by gene over
# the spots of the section (measured raw counts are log-normalised to the models' scale first).

# %%
hs.tl.predict(sdatas[TEST], model)
print("hist_pred", b4.obsm["hist_pred"].shape, "genes:", b4.uns["hist_pred"]["genes"][:5], "...")
scores = hs.tl.evaluate(sdatas[TEST])
summary = hs.tl.summarize_scores(scores)
print(f"{TEST}: mean PCC {summary['mean']:.3f} (95% CI {summary['ci_low']:.3f}..{summary['ci_high']:.3f}), "
      f"median {summary['median']:.3f}, {summary['n_above']} of {summary['n']} genes with r > 0.3")
print(scores.head(10).round(3).to_string(index=False))

# %%
best = scores.dropna()["gene"].head(4).tolist()
hs.pl.predicted_vs_measured(
    sdatas[TEST], best, title=f"{TEST}: the {len(best)} best-predicted of {len(genes)} genes (highest Pearson r)", show=True
)

# %% [markdown]
# How good is that? Predicting a new patient from five serial sections of a single other patient is hard,
# and `EPOCHS` is far below the default. A quick reference is the ridge baseline of the HEST benchmark (PCA of
# the features + ridge regression, no epochs), trained on the same sections and genes. `hs.pl.scores` puts
# both per-gene distributions side by side; `hs.tl.cross_validate` does this properly, fold by fold. With
# this short training the baseline may well score higher: a HiST trained for a few dozen epochs on five
# serial sections of one tumour has learned little that carries over to another patient.

# %%
ridge = hs.tl.train({n: sdatas[n] for n in TRAIN}, genes=genes, method="ridge", progress=False)
hs.tl.predict(sdatas[TEST], ridge, key_added="ridge_pred")
ridge_scores = hs.tl.evaluate(sdatas[TEST], pred_key="ridge_pred")
print(f"ridge baseline on {TEST}: mean PCC {ridge_scores['pearson'].mean():.3f}; HiST: {scores['pearson'].mean():.3f}")
both = pd.concat([scores.assign(method=f"HiST ({EPOCHS} epochs)"), ridge_scores.assign(method="ridge")])
hs.pl.scores(both, by="method", title=f"{TEST} (held out), {len(genes)} genes, trained on patient C", show=True)

# %% [markdown]
# ## 6. Save and load the model
#
# `model.save` writes one `.pt` file with the weights and every setting; `hs.tl.load_model` reads it with
# `torch.load(weights_only=True)` (no code is executed) and can check the genes and feature dimension it is
# expected to have.

# %%
path = model.save(OUT / "hist_patientC.pt", overwrite=True)
reloaded = hs.tl.load_model(path, genes=genes, feature_dim=b4.obsm["X_hist"].shape[1])
hs.tl.predict(sdatas[TEST], reloaded, key_added="hist_pred_reloaded")
diff = float(np.abs(b4.obsm["hist_pred_reloaded"] - b4.obsm["hist_pred"]).max())
print(f"saved {path.name} ({path.stat().st_size / 1e6:.1f} MB); max difference after reloading: {diff:.2e}")

# %% [markdown]
# ## 7. A bare H&E image: tiles instead of spots
#
# For a slide without spatial transcriptomics, `hs.io.read_image` reads the image (give its scale: here
# 0.6875 µm per pixel) and `hs.pp.tile` covers the tissue with square tiles that act as spots. We lay the
# tiles 200 µm apart, the spacing of the spots the model was trained on, and encode a 100 µm patch at the
# centre of each (`patch_um=100`), the spot size of training, so that the model sees the same geometry.
#
# `hs.tl.predict` on the tile table adds a **predicted table** (`sdata.tables["hist_pred"]`, tiles x genes,
# predictions in `.X` and `layers["hist_pred"]`) that scanpy and squidpy use like any measured table.

# %%
mirror = os.environ.get("HIST_SD_DATA_DIR")
if mirror:  # the original JPEG of B4 in the local mirror
    image = next((Path(mirror) / "her2st" / "data" / "ST-imgs" / "B" / "B4").glob("*.jpg"))
else:  # downloaded data: the same pixels, taken from the loaded image as a (y, x, 3) uint8 array
    image = sdatas[TEST].images[f"{TEST}_full_image"]["scale0"].image.transpose("y", "x", "c").values
bare = hs.io.read_image(image, mpp=0.6875, name="B4_bare")
hs.pp.tile(bare, tile_um=200, min_tissue=0.5)
tiles = bare.tables["tiles"]
print(f"{tiles.n_obs} tiles of 200 µm with at least half of their area on tissue")

t0 = time.perf_counter()
hs.pp.features(bare, table_key="tiles", patch_um=100, progress=False)
hs.tl.predict(bare, model, table_key="tiles")
pred = bare.tables["hist_pred"]
print(f"features + prediction: {time.perf_counter() - t0:.0f} s; predicted table {pred.n_obs} x {pred.n_vars}")

# %% [markdown]
# The predicted table chains into the usual tools. Predictions are already on the log-normalised scale, so
# no `normalize_total`/`log1p` is needed: straight to PCA, a neighbourhood graph and clusters, and to
# squidpy's spatial statistics on the tile grid (4 neighbours per tile).

# %%
sc.pp.pca(pred, n_comps=10)
sc.pp.neighbors(pred, n_neighbors=15)
sc.tl.leiden(pred, resolution=0.5, flavor="igraph", n_iterations=2, directed=False, random_state=0)
sq.gr.spatial_neighbors_grid(pred, n_neighs=4)  # squidpy >= 1.8; older: sq.gr.spatial_neighbors(pred, coord_type="grid", n_neighs=4)
sq.gr.spatial_autocorr(pred, mode="moran", n_perms=None)
moran = pred.uns["moranI"]
print(f"{pred.obs['leiden'].nunique()} leiden clusters; predicted genes with the highest Moran's I on the tiles:")
print(moran.head(5)[["I", "pval_norm"]].round(4))

# %% [markdown]
# Read these maps with the quick training in mind. A model trained for a few dozen epochs on one patient
# often predicts smooth gradients across the whole section rather than the tissue's structure; such maps have
# a Moran's I close to 1 on the tile grid and clusters that follow the gradient, which is a property of the
# under-trained model, not biology. Compare them with the H&E underneath before interpreting them.

# %%
top = moran.index[:3].tolist()
hs.pl.spatial(bare, top, table_key="hist_pred", obs="leiden", title=[f"{g} (predicted)" for g in top] + ["leiden"], show=True)
print(f"total {time.perf_counter() - t_start:.0f} s")
