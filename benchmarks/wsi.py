"""Whole-slide speed and memory: a generated ~58,000 x 46,000 px pyramidal TIFF, read lazily, tissue, tiles, features.

Steps (each measured in a fresh process, so that its peak resident memory is its own):

1. ``generate``: a pyramidal, JPEG-tiled TIFF (levels 1, 1/4, 1/16, 1/64; 0.5 µm per pixel) mosaicked from a her2st
   H&E JPEG, written tile by tile with tifffile (the full image never exists in memory).
2. ``pipeline``: ``hs.io.read_wsi`` -> ``hs.pp.detect_tissue`` -> ``hs.pp.tile`` (100 µm) -> ``hs.pp.features``
   (EfficientNet-Lite0, 224 px) on the first ``--tiles`` tiles; time per step, per 1,000 tiles, peak RSS.
3. ``limit``: this CPU's sustained float32 GFLOP/s and the encoder's FLOPs per patch, i.e. the patches/s the
   compute allows. Spot images (her2st) and the feature-extraction levers are measured by ``benchmarks/features.py``.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/wsi.py --out results/wsi
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MPP = 0.5
TILE = 512


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _source(data_dir: Path):
    import numpy as np
    from PIL import Image

    jpg = data_dir / "her2st" / "data" / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg"
    Image.MAX_IMAGE_PIXELS = None  # a known, trusted file of the data mirror
    with Image.open(jpg) as im:
        img = np.asarray(im.convert("RGB"))
    h, w = (img.shape[0] // TILE) * TILE, (img.shape[1] // TILE) * TILE
    return img[:h, :w]


def generate(path: Path, data_dir: Path, reps: tuple[int, int] = (5, 6)) -> dict:
    """Write the pyramidal TIFF tile by tile; returns its size and the time it took."""
    import numpy as np
    import tifffile
    from PIL import Image

    t0 = time.perf_counter()
    src = _source(data_dir)
    height, width = src.shape[0] * reps[0], src.shape[1] * reps[1]
    levels = []
    for k in range(4):
        f = 4**k
        small = src if f == 1 else np.asarray(Image.fromarray(src).reduce(f))
        levels.append((small, -(-height // f), -(-width // f)))

    def tiles(small, h, w):
        for y in range(0, h, TILE):
            rows = (y + np.arange(TILE)) % small.shape[0]
            for x in range(0, w, TILE):
                cols = (x + np.arange(TILE)) % small.shape[1]
                yield small[np.ix_(rows, cols)]

    res = 1e4 / MPP
    opts = {"tile": (TILE, TILE), "photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": 85},
            "resolutionunit": "CENTIMETER", "dtype": np.uint8}
    tmp = path.with_suffix(".tmp.tif")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        for i, (small, h, w) in enumerate(levels):
            extra = {"subifds": len(levels) - 1} if i == 0 else {"subfiletype": 1}
            tw.write(tiles(small, h, w), shape=(h, w, 3), resolution=(res / 4**i, res / 4**i), **opts, **extra)
    tmp.replace(path)
    return {"width": width, "height": height, "gigapixels": width * height / 1e9, "file_mib": path.stat().st_size / 2**20,
            "seconds": time.perf_counter() - t0}


def pipeline(path: Path, n_tiles: int) -> dict:
    """read_wsi -> detect_tissue -> tile -> features on ``n_tiles`` tiles, each step timed."""
    import torch

    import hist_sd as hs

    torch.set_num_threads(2)
    out: dict = {}
    t = time.perf_counter()
    sdata = hs.io.read_wsi(path)
    out["read_s"] = time.perf_counter() - t
    t = time.perf_counter()
    hs.pp.detect_tissue(sdata)
    out["tissue_s"] = time.perf_counter() - t
    t = time.perf_counter()
    hs.pp.tile(sdata, tile_um=100)
    out["tile_s"] = time.perf_counter() - t
    table = sdata.tables["tiles"]
    out["tiles_on_tissue"] = int(table.n_obs)
    sub = table[: min(n_tiles, table.n_obs)].copy()
    del sdata.tables["tiles"]
    sdata.tables["tiles"] = sub
    t = time.perf_counter()
    hs.pp.features(sdata, table_key="tiles", patch_um=100, device="cpu", progress=False)
    out["features_s"] = time.perf_counter() - t
    out["tiles_featurised"] = int(sub.n_obs)
    out["seconds_per_1000_tiles"] = 1000 * out["features_s"] / sub.n_obs
    out["tiles_per_s"] = sub.n_obs / out["features_s"]
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def limit() -> dict:
    """This CPU's compute limit for the encoder (shared with ``benchmarks/features.py``)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from features import limit as features_limit

    return features_limit()


def _child(step: str, args: argparse.Namespace) -> dict:
    """Run one step in a fresh interpreter and return its JSON."""
    cmd = [sys.executable, __file__, "--step", step, "--out", str(args.out), "--tiles", str(args.tiles)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
    if res.returncode != 0:
        raise RuntimeError(f"step {step} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results/wsi"))
    p.add_argument("--tiles", type=int, default=2000)
    p.add_argument("--step", default=None, choices=["generate", "pipeline", "limit"])
    args = p.parse_args()
    data_dir = Path(os.environ.get("HIST_SD_DATA_DIR", "../shared/data"))
    slide = args.out / "mosaic.tif"
    if args.step is not None:
        fn = {"generate": lambda: generate(slide, data_dir), "pipeline": lambda: pipeline(slide, args.tiles),
              "limit": limit}[args.step]
        sys.stdout.write(json.dumps(fn()) + "\n")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    if not slide.exists():
        results["generate"] = _child("generate", args)
    for step in ("pipeline", "limit"):
        results[step] = _child(step, args)
        sys.stderr.write(f"{step}: {json.dumps(results[step])}\n")
    lim = results["limit"]["compute_limit_patches_per_s"]
    results["fraction_of_compute_limit"] = {"wsi_tiles": results["pipeline"]["tiles_per_s"] / lim}
    (args.out / "wsi.json").write_text(json.dumps(results, indent=2))
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
