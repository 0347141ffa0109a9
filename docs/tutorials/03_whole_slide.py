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
# # A whole slide, end to end
#
# A whole-slide image has no spots: hist_sd reads it lazily, finds the tissue, covers it with square tiles
# that act as spots, encodes a patch per tile and applies models trained on spatial transcriptomics. This
# tutorial takes a real Aperio SVS file (OpenSlide's `CMU-1-Small-Region.svs`, CC0: a small region of an H&E
# slide at 20x) through every step:
#
# 1. read the slide as a lazy image pyramid (`hs.io.read_wsi`);
# 2. find the tissue and tile it (`hs.pp.detect_tissue`, `hs.pp.tile`);
# 3. train two small models on her2st (expression and tumour), encode the tiles and predict them;
# 4. do the same for many slides in one call, each into its own zarr store (`hs.tl.predict_slides`).
#
# This page was executed when the documentation was built: every table, score and figure below is what that
# run printed. It is a **quick run** on 2 CPU cores: the models are trained on two her2st sections only and are
# per-spot models (PCA + ridge regression, a small MLP) that take seconds, so their predictions on this slide
# (another tissue, another lab, another scanner) are an illustration of the mechanics, not a validated result:
# nothing measured exists for this slide to score them against.
#
# ```bash
# HIST_SD_DATA_DIR=/path/to/shared/data python docs/tutorials/03_whole_slide.py
# ```

# %%
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from distributed import Client

import hist_sd as hs

logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
hs.settings.verbosity = "info"  # hist_sd logs every key it writes
hs.settings.progress = False  # no progress bars in a static page

MIRROR = os.environ.get("HIST_SD_DATA_DIR")
SLIDE = Path(MIRROR) / "wsi" / "CMU-1-Small-Region.svs" if MIRROR else None
OUT = Path(os.environ.get("HIST_SD_TUTORIAL_OUT", tempfile.gettempdir())) / "hist_sd_tutorial" / "03_whole_slide"
OUT.mkdir(parents=True, exist_ok=True)
TILE_UM = 100  # tiles of 100 µm side, 100 µm apart: the patch size of the legacy ST training spots
t_start = time.perf_counter()

# %% [markdown]
# ## 1. Read the slide lazily
#
# `hs.io.read_wsi` opens the file with tiffslide and turns every level of the slide's own pyramid into a dask
# array: nothing is decoded until a function reads a region. The scale (µm per pixel) comes from the file's
# metadata (Aperio `MPP`) and is recorded where every hist_sd function finds it (`hs.io.image_mpp`).

# %%
if SLIDE is None or not SLIDE.is_file():
    raise FileNotFoundError("This tutorial needs the data mirror: set HIST_SD_DATA_DIR (see the project README).")
t0 = time.perf_counter()
slide = hs.io.read_wsi(SLIDE)
image_key = next(iter(slide.images))
levels = slide.images[image_key]
print(f"opened in {time.perf_counter() - t0:.2f} s; {hs.io.image_mpp(slide):.3f} µm per pixel")
for name in levels:
    level = levels[name]["image"]
    print(f"  {name}: {level.sizes['y']} x {level.sizes['x']} px, lazy: {type(level.data).__name__}")

# %% [markdown]
# ## 2. Tissue and tiles
#
# `hs.pp.detect_tissue` thresholds a coarse level (about 8 µm per pixel) and stores the tissue as polygons;
# `hs.pp.tile` lays a grid of square tiles over it and keeps those at least half on tissue. The tiles are a
# shapes element plus a table with no genes (`sdata.tables["tiles"]`), with `obs["tissue_fraction"]` and the
# same scale metadata as a table of spots, so every function that takes spots takes tiles.

# %%
hs.pp.detect_tissue(slide)
hs.pp.tile(slide, tile_um=TILE_UM, min_tissue=0.5)
tiles = slide.tables["tiles"]
print(f"{len(slide.shapes['tissue'])} tissue region(s); {tiles.n_obs} tiles of {TILE_UM} µm on tissue")
print(tiles.obs[["array_row", "array_col", "tissue_fraction"]].describe().round(2).loc[["count", "min", "max"]])

# %% [markdown]
# The tiles are drawn as squares of their true size over the slide, coloured by the fraction of each tile on
# tissue (a fraction, so the colour scale runs from 0 to 1); the bar gives the scale in µm.

# %%
hs.pl.spatial(slide, obs="tissue_fraction", table_key="tiles", title="CMU-1-Small-Region: tissue fraction per tile",
              show=True)

# %% [markdown]
# ## 3. Models trained on spatial transcriptomics
#
# Two her2st sections of one patient (C2, C3) give the training data: their spot patch features, 50 spatially
# variable genes, and tumour labels derived from their expression by copy-number inference
# (`hs.tl.tumor_labels`, see the tumour tutorial). Two per-spot models, which need no grid and so apply to tiles
# at any spacing, are trained in seconds: PCA + ridge regression for expression (`method="ridge"`, the HEST
# benchmark's baseline) and a small MLP for the tumour probability (`method="mlp"`, `task="tumor"`).

# %%
t0 = time.perf_counter()
train = hs.datasets.her2st(["C2", "C3"], images_only=True)
for sdata in train.values():
    hs.pp.features(sdata)
    hs.tl.tumor_labels(sdata, seed=0)
ranked = hs.pp.spatial_genes(list(train.values()), min_moran=0.0, max_pval=1.0, n_top=50)
genes = ranked.index[ranked["selected"]].tolist()
expression = hs.tl.train(train, genes=genes, method="ridge")
tumour = hs.tl.train(train, task="tumor", method="mlp", seed=0)
print(f"training data and both models: {time.perf_counter() - t0:.0f} s")
print(expression)
print(tumour)

# %% [markdown]
# Encode one patch per tile with the models' encoder and patch size, and predict. An expression model adds a
# predicted table (`sdata.tables["hist_pred"]`: tiles x genes, ready for scanpy and squidpy); a tumour model
# writes `obs["hist_tumor"]`, a probability.

# %%
t0 = time.perf_counter()
hs.pp.features(slide, table_key="tiles", patch_um=expression.patch_um)
hs.tl.predict(slide, expression, table_key="tiles")
hs.tl.predict(slide, tumour, table_key="tiles")
pred = slide.tables["hist_pred"]
print(f"features + predictions of {tiles.n_obs} tiles: {time.perf_counter() - t0:.0f} s")
print(f"predicted table: {pred.n_obs} tiles x {pred.n_vars} genes")
print("tumour probability per tile: min {:.2f}, median {:.2f}, max {:.2f}".format(
    *np.quantile(tiles.obs["hist_tumor"], [0, 0.5, 1])))

# %% [markdown]
# The genes whose predictions vary most across the tiles, and the tumour probability (on a 0-1 scale):

# %%
spread = pred.to_df().std().sort_values(ascending=False)
top = spread.index[:2].tolist()
print("most variable predicted genes:", ", ".join(f"{g} (SD {spread[g]:.2f})" for g in top))
hs.pl.spatial(slide, top, table_key="hist_pred", ncols=2, title=[f"{g}, predicted from H&E" for g in top], show=True)
hs.pl.spatial(slide, obs="hist_tumor", table_key="tiles", title="Tumour probability predicted from H&E", show=True)

# %% [markdown]
# ## 4. Many slides: one call, one zarr store per slide
#
# `hs.tl.predict_slides` does steps 1-3 for a list of slide files, one dask.distributed task per slide, and
# writes each slide's tiles, features and predicted table to `out/<slide>.zarr` (the slide's pixels stay in
# the slide file). It is resumable: a slide whose store exists is skipped. Without `client=` it starts a local
# cluster of `n_workers` processes; here the one slide runs with the saved expression model on an in-process
# cluster (`processes=False`), which also works in a plain script; give the address of a running scheduler to
# spread many slides over machines.

# %%
model_path = expression.save(OUT / "ridge_her2st_C.pt", overwrite=True)
t0 = time.perf_counter()
with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
    done = hs.tl.predict_slides([SLIDE], model_path, out=OUT / "slides", tile_um=TILE_UM, client=client, overwrite=True)
print(f"predict_slides: {time.perf_counter() - t0:.0f} s")
print(done[["slide", "status", "n_tiles", "seconds"]].to_string(index=False))

# %%
stored = hs.io.read_zarr(done["zarr"].iloc[0])
print(stored)
# predict_slides tiles on the mask `hs.pp.tile` computes itself (no detect_tissue step), so its tile set can differ
# at the tissue's edge from the one above; on the tiles both runs share, the predictions must agree
mine, theirs = pred.to_df(), stored.tables["hist_pred"].to_df()
common = mine.index.intersection(theirs.index)
diff = float(np.abs(mine.loc[common].to_numpy() - theirs.loc[common].to_numpy()).max())
print(f"tiles here {len(mine)}, in the store {len(theirs)}, shared {len(common)}; "
      f"largest difference of a shared tile's prediction: {diff:.1e}")
print(f"total {time.perf_counter() - t_start:.0f} s")
