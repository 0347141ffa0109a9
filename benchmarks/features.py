"""Patch-feature extraction speed and memory on one full her2st section (``hs.pp.features``).

After a warm-up (encoder built, one forward pass on a dummy batch), the timed part reads the section from disk
(counts, spots and the full-resolution H&E JPEG, with ``hs.io.read_st``) and encodes every spot's patch
(``patch_um`` = spot diameter, resized to the encoder's input size). Reported: spots, seconds reading, seconds
encoding, patches/s over the whole timed part and over encoding alone, and the process's peak RSS.
Targets (efficientnet-lite0, 224 px, 2 CPU cores): >= 60 patches/s and peak RSS < 2 GiB.

Usage::

    HIST_SD_DATA_DIR=../shared/data python benchmarks/features.py --section B4
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch

import hist_sd as hs


def section_paths(data_dir: Path, section: str) -> tuple[Path, Path, Path]:
    d = data_dir / "her2st" / "data"
    folder = d / "ST-imgs" / section[0] / section
    images = sorted(folder.glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"No H&E image for section {section!r} in {folder}.")
    return d / "ST-cnts" / f"{section}.tsv.gz", d / "ST-spotfiles" / f"{section}_selection.tsv", images[0]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--section", default="B4")
    ap.add_argument("--data-dir", default=os.environ.get("HIST_SD_DATA_DIR", "../shared/data"))
    ap.add_argument("--encoder", default="efficientnet-lite0")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="encoder threads (default: torch.get_num_threads())")
    ap.add_argument("--workers", type=int, default=1, help="patch-preparing threads")
    ap.add_argument("--stain-norm", default=None, choices=[None, "macenko", "reinhard"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO)

    counts, spots, image = section_paths(Path(args.data_dir), args.section)
    enc = hs.pp.get_encoder(args.encoder, device=args.device)
    with torch.inference_mode():  # warm-up: allocator, oneDNN kernels
        x = torch.zeros(args.batch_size, 3, enc.input_size, enc.input_size, device=enc.device)
        enc.module(x.contiguous(memory_format=torch.channels_last))
    load = os.getloadavg()[0]

    rss_warm = peak_rss_gib()
    c0, t0 = time.process_time(), time.perf_counter()
    sdata = hs.io.read_st(counts, spots, image, patient=args.section[0])
    t1 = time.perf_counter()
    rss_read = peak_rss_gib()
    hs.pp.features(sdata, encoder=enc, batch_size=args.batch_size, num_workers=args.workers,
                   num_threads=args.threads, stain_norm=args.stain_norm, precision=args.precision,
                   progress=False)
    t2, c2 = time.perf_counter(), time.process_time()

    table = sdata.tables["table"]
    feats = table.obsm["X_hist"]
    assert feats.shape == (table.n_obs, enc.dim) and np.isfinite(feats).all()
    n = table.n_obs
    p = table.uns["X_hist"]["params"]
    threads = args.threads or torch.get_num_threads()
    print("| section | encoder | precision | spots | patch px -> input | threads | workers | batch | read s | encode s "
          "| patches/s total | patches/s encode | CPU s | peak RSS GiB (warm / read / end) | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {args.section} | {enc.name} | {args.precision} | {n} | {p['patch_px']} -> {enc.input_size} | {threads} "
        f"| {args.workers} | {args.batch_size} | {t1 - t0:.2f} | {t2 - t1:.2f} | {n / (t2 - t0):.1f} "
        f"| {n / (t2 - t1):.1f} | {c2 - c0:.1f} | {rss_warm:.2f} / {rss_read:.2f} / {peak_rss_gib():.2f} "
        f"| {load:.1f} |"
    )


if __name__ == "__main__":
    main()
