"""Downloads with a local mirror, a cache, sha256 checks and atomic writes (``urllib`` only)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hist_sd import _constants as C
from hist_sd._core._data import data_dir as _env_data_dir
from hist_sd._core._files import cache_root, sha256

logger = logging.getLogger("hist_sd")

PathLike = str | os.PathLike[str]

#: almaan/her2st is read at this commit (raw GitHub file URLs).
HER2ST_COMMIT = "85df7411b987a7dec3feff9718b869a7a82091ec"
HER2ST_URL = f"https://raw.githubusercontent.com/almaan/her2st/{HER2ST_COMMIT}/"

#: sha256 of every her2st file the downloader fetches (path relative to the repository root).
HER2ST_SHA256: dict[str, str] = {
    "data/ST-cnts/B1.tsv.gz": "97b3abf2676c596ac7dd53829780005724cab62a6f676697516006481a443f74",
    "data/ST-cnts/B2.tsv.gz": "b43cef41e3164ffe4a3b43b6ed396f664d971451d3dc151dea4d91a09e84d95c",
    "data/ST-cnts/B3.tsv.gz": "bd1fd03f33bdc14ca68a271525587d27b1e78323ea695413d274d6c388becf7a",
    "data/ST-cnts/B4.tsv.gz": "e38231c2a38c9bc7e6d550eec0e527c1869ee0e525fc913e708d1323c34f5ebb",
    "data/ST-cnts/B5.tsv.gz": "05bdd1ea4234f62d5223f94a96d37f2f87b48e95062251560cdd676f5514948a",
    "data/ST-cnts/B6.tsv.gz": "bfb2b4e5d99b6021c43f546a3e773c32f4f13a4b461cdd1684d364f9fe550e2b",
    "data/ST-cnts/C1.tsv.gz": "8383130eebf0f9f8186f006ed6b704149ba62303605a312a9080fa9901be9c20",
    "data/ST-cnts/C2.tsv.gz": "c1c59ea6cffae36b9ecb561b8e2a97e3aa5f4085f748e991a0e330ed9d09773d",
    "data/ST-cnts/C3.tsv.gz": "e00c55a3eb9caac5d9c71b8906aae8be8b38f93e23938f4a0ebee17683ef6a2a",
    "data/ST-cnts/C4.tsv.gz": "33201f76d41d7131dc600a0f87d9a70383af3503e81698b4d11e6f2e8d73e9da",
    "data/ST-cnts/C5.tsv.gz": "c0f310315ca6110d74dbdf7011e5b42432ba0b8eb5f001824764911988f39338",
    "data/ST-cnts/C6.tsv.gz": "60478b0d2411501866685f41312c65c6591e499d64d5b719be8ee9bab25c9bc8",
    "data/ST-cnts/D1.tsv.gz": "8fe13d29763b3f6a9e85322dae97e05c4ca42b57cef4b1077c88b9b7b6a980ac",
    "data/ST-cnts/D2.tsv.gz": "e63818ad8717b47ca949e082c1f28b9c807475b8d722a6f5c1acda7b618b5495",
    "data/ST-cnts/D3.tsv.gz": "0bdfa82f3a2f4c659757cbd9f9b5734f9faabc44c4ee72094bf2b8609c86e01f",
    "data/ST-cnts/D4.tsv.gz": "4da2a65ffdd6ce52993e4f68b3730326c00ce9304cf8aebaf125efe9997fb898",
    "data/ST-cnts/D5.tsv.gz": "a1592e1742913cd37f2534153467752ded6eade730d5acdc227daad55c9e551f",
    "data/ST-cnts/D6.tsv.gz": "3b9ab37e0cacf7956da1354c8c0ee2a7fc5e12be78ccb4d10578df36a6bf7271",
    "data/ST-cnts/E1.tsv.gz": "b2f572ea0a95d256cb172a9284e96b6d2ff236398d4934a992df85c96d11c4cc",
    "data/ST-cnts/E2.tsv.gz": "a725a87e1a74ef0c096d421664dd9100bf973e5768c28acfa9c17abb63677a95",
    "data/ST-cnts/E3.tsv.gz": "8030d33e51c2831f7c758ed0374baa9f121d2e2dce6decd47228ff070c7f0ac4",
    "data/ST-cnts/F1.tsv.gz": "187aa13f204d514851d3674dfa09b4a8d7f2676f1d40d2ef63e9e368c7cf672a",
    "data/ST-cnts/F2.tsv.gz": "7de4ca7c3ccb923f4d636b21a4639284c66da9d97a93e1ab6712b3c453229c04",
    "data/ST-cnts/F3.tsv.gz": "6b7eb2d7ff8c6a8826cfba304de2d3b87bb8e30f68d050b83007de9888546743",
    "data/ST-cnts/G1.tsv.gz": "396153436dfc39e199bdc01447b3f8929aef598d7064c0c24a33da00f54570ea",
    "data/ST-cnts/G2.tsv.gz": "9d51a5ed85bdf60069dcf51beeffba4e90e35e8630ec3b707a2453ffdd608e3b",
    "data/ST-cnts/G3.tsv.gz": "9fd3c8efb94239b567157860224a33417d798a65d3a28fb9982651795cb2259e",
    "data/ST-cnts/H1.tsv.gz": "90b391782535f38c9ab20fe8b38f44ebbfdad2201075a677a198cbef12c29b07",
    "data/ST-cnts/H2.tsv.gz": "e839f271f2cde0ccf8f43f4358133f066be5d75d982839eba75abd7967486a34",
    "data/ST-cnts/H3.tsv.gz": "5771d4793f4e1377ed066f27cdbc703d3317c81b7dd5323a175d2227c7e3ae1d",
    "data/ST-spotfiles/B1_selection.tsv": "7ea9963677db80199db928d763b0b34ea1015fb7452e85ac7b21d42ee15c3875",
    "data/ST-spotfiles/B2_selection.tsv": "963e3f0b0e6eb17586788f2228dbd829ca7d13eb0211bf8b1a5685d3a33b8153",
    "data/ST-spotfiles/B3_selection.tsv": "23b07cc9e5142802915cefedb7a8259766b58544fa7a2ac3eda21feaa267b9c9",
    "data/ST-spotfiles/B4_selection.tsv": "192b46f3ca414c85753a01a4fb5760a697ca6c0a1aadb949c4687cc6efa9faa0",
    "data/ST-spotfiles/B5_selection.tsv": "dc206c6e6448e81ba55d01f16fa862d07f5f7087fe16772eab919355e43cd1a7",
    "data/ST-spotfiles/B6_selection.tsv": "63b90d6283071d2db43d5486eeba0e76091998e64fa8c4a95b4501086c8aff33",
    "data/ST-spotfiles/C1_selection.tsv": "9a5187c98d2c312064057d3bad192d4a19105b5135ff2b68f5e4547cade0954d",
    "data/ST-spotfiles/C2_selection.tsv": "235b5f4306b3b57c628ffc82c98c7109602474fbcc79a917b9c50517f99b6b1c",
    "data/ST-spotfiles/C3_selection.tsv": "7fd76c13370b7804ac3bb377b846d22485cf9223f9dd8dfc25be06e5aaf65755",
    "data/ST-spotfiles/C4_selection.tsv": "47e79f3b9dbfa3a8c18af9e948ba7ba4bf0a75ea1b4c292bc714ced7d0917d4c",
    "data/ST-spotfiles/C5_selection.tsv": "2114cc3b4da759772112897f1e247d5443c9f8c808e6a9a952eb4fda379a194c",
    "data/ST-spotfiles/C6_selection.tsv": "efdbbc6759c6af43baa966505c31705f09c087c1dccf1ea3e0d1db7b55717117",
    "data/ST-spotfiles/D1_selection.tsv": "7ba7843b52ddc2b147ee968fe9466a5d1fa0d884b51def292ce340d88da034eb",
    "data/ST-spotfiles/D2_selection.tsv": "5e0cadc230094060d071124cfb5ab6223d3dbb56b6aa6c3e4f8f9c8f1e329fb5",
    "data/ST-spotfiles/D3_selection.tsv": "e820564d7720c1fbc9910f5440368a43a2b862d617a9c107582ddb706af61a3b",
    "data/ST-spotfiles/D4_selection.tsv": "82e12ff5f14a9564fd0aa9755243e4412e6786fdb559210cef9c3c6ff35a05b0",
    "data/ST-spotfiles/D5_selection.tsv": "f19eebb34f6a031fe766715d7f97a7682e201f30097fd0fa15ebf8f34ff95853",
    "data/ST-spotfiles/D6_selection.tsv": "82d80015e0e789bbbfe2d6ea033da43207a1803666a0ec5b162db380b3cc1cb7",
    "data/ST-spotfiles/E1_selection.tsv": "a979c36f6310fff965c96f05ad290ca322d88e400b5aed2a1139fdd6f0e2da92",
    "data/ST-spotfiles/E2_selection.tsv": "1beeac4b7a45e432eb4d9c34460e7a2a3342f77e0bb6dcffae66ae31b1584444",
    "data/ST-spotfiles/E3_selection.tsv": "f0fe37cfb98e3757587d0d43d45fc734b3627d336ccab4da179548b86c5c1d9c",
    "data/ST-spotfiles/F1_selection.tsv": "cf479a5812c317541c7f7d6a4ebf1bfd93b0a1ab3eef35a8da15b9e76164f2f4",
    "data/ST-spotfiles/F2_selection.tsv": "3a9149a67b05971dfb27edb2261d9ffd2443543021356b0d46f26d8237c1a20d",
    "data/ST-spotfiles/F3_selection.tsv": "106ba9b275b29fd745116b8961a1a0bb39ec41d9d0433932d6b129f98a46c093",
    "data/ST-spotfiles/G1_selection.tsv": "0e2f630e09a7c0e1869918c0c9afebcff36b86006a6809533fb09405c831a01d",
    "data/ST-spotfiles/G2_selection.tsv": "abae30bb6f434cb2aae34b8ef56da6b613c840d48c49279d55f4600ad496245c",
    "data/ST-spotfiles/G3_selection.tsv": "6f258aa6b4d432d29f0b7ba4a9be64ac7e58fbc430523a41e4eb5bdf13127272",
    "data/ST-spotfiles/H1_selection.tsv": "fc9cc5bad3a1e26e48f435696259df38b500042a9565486c15fd37ab7d8f9ed6",
    "data/ST-spotfiles/H2_selection.tsv": "c38d3ade8b5674633097b23a66a554831193cee48ba54a7d7418291a9f5533f9",
    "data/ST-spotfiles/H3_selection.tsv": "430da6f95105eb660f4e8b9b688d44d0d28b3ff66fee3e201cc160ee5739a28c",
    "data/ST-imgs/B/B4/BT10737_D2_HE.jpg": "3cb165614ce2a13426381e450220dccac980cc9bda6a90fb041c28ca0e2c753d",
    "data/ST-imgs/C/C2/5714_HE_BT_C2.jpg": "26e2f73ae840cdd46c5bba405aae181f13a56a376b9848dff23f7a9c5de7f19e",
    "data/ST-imgs/C/C3/5714_HE_BT_D1.jpg": "0005a92674014d473040a28f0afca89ce5fa5c44019b479b638ceb3272ceb568",
    "data/ST-imgs/C/C4/5714_HE_BT_D2.jpg": "f40607eb1d5f0d125decd71c48b0c5d29cf6776ad92297fd185631208c82d6f2",
    "data/ST-imgs/C/C5/5714_HE_BT_E1.jpg": "34028ea41e376396b50c42b0a11a7e689c85be4a8022e668d0a09cc128c04c65",
    "data/ST-imgs/C/C6/5714_HE_BT_E2.jpg": "dddd87232589648861a9b6776dc1749be8306213f6589aeef0e805fb2b1ee263",
    "data/ST-pat/lbl/B1_labeled_coordinates.tsv": "f7050caa71c47a4c95fcca2a7f29560d387310877b1c9e4a54f841059db837ee",
    "data/ST-pat/lbl/C1_labeled_coordinates.tsv": "41b6e1bbb1031480d969e725e739971cb39dbdb6e2b6d662d585bebacf093040",
    "data/ST-pat/lbl/D1_labeled_coordinates.tsv": "c8bf26103d1aac42611d9c85ba3db9c596b9a80ec045ca9b246b8d14d8b3c20f",
    "data/ST-pat/lbl/E1_labeled_coordinates.tsv": "29db60fe5b306bb982fbd2bbdd1f9c60eedf90c6ac1d56bedd3c18ed5a369829",
    "data/ST-pat/lbl/F1_labeled_coordinates.tsv": "3b59970f0c6ba09d8e0fc9286ace2a295bf06d36c59684162b7a8aca0e021ec5",
    "data/ST-pat/lbl/G2_labeled_coordinates.tsv": "8466275647ad125569ee94d099cc7b78c15028968ba1dd267a85a81c001a16ff",
    "data/ST-pat/lbl/H1_labeled_coordinates.tsv": "b65cbc99ed7a01281bc2eb87be87b902312e47ca91bc1f00ff351489b78434c3",
}

#: xclone's gene annotation (Apache-2.0), files ``xclone/data/anno_data/*`` of single-cell-genetics/XClone.
XCLONE_URLS: dict[str, str] = {
    "annotate_genes_hg38_update.txt": "https://raw.githubusercontent.com/single-cell-genetics/XClone/"
    "6a8b2aed232319e0a5e032a9b410d2b96d590578/xclone/data/anno_data/annotate_genes_hg38_update.txt",
    "annotate_genes_mm10.txt": "https://raw.githubusercontent.com/single-cell-genetics/XClone/"
    "cd9c8f137fa97908188c32c623c703c9cec2a7b4/xclone/data/anno_data/annotate_genes_mm10.txt",
}
XCLONE_SHA256: dict[str, str] = {
    "annotate_genes_hg38_update.txt": "f517822439a7892e61a32ebc8b22561b4283e7e98190d3623d3edd273daaade5",
    "annotate_genes_mm10.txt": "778ca3db49df41d6f0f5ba779ec82e81b7278646fe1b68d37a13e6cdee9046e3",
}

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from.

    Attributes
    ----------
    name
        Dataset folder name, both in the local mirror and in the cache.
    base_url
        URL prefix the relative file paths are appended to.
    sha256
        Relative path -> expected sha256 of every downloadable file.
    urls
        Relative path -> full URL, for files not under ``base_url``.
    """

    name: str
    base_url: str
    sha256: Mapping[str, str]
    urls: Mapping[str, str] | None = None

    def url(self, rel: str) -> str:
        """The download URL of ``rel``."""
        if self.urls and rel in self.urls:
            return self.urls[rel]
        return self.base_url + rel


HER2ST = Source("her2st", HER2ST_URL, HER2ST_SHA256)
GENE_POSITIONS = Source("gene_positions", "", XCLONE_SHA256, XCLONE_URLS)


def mirror_root(name: str, data_dir: PathLike | None = None) -> Path | None:
    """The local mirror of dataset ``name`` (``data_dir`` or ``$HIST_SD_DATA_DIR``), or ``None`` when unset.

    ``data_dir`` may be the folder holding ``name/`` (the layout of the shared mirror) or ``name/`` itself.
    """
    root = _env_data_dir(data_dir)
    if root is None:
        return None
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise FileNotFoundError(
            f"`data_dir` (or ${C.DATA_DIR_ENV}) points at {str(root_path)!r}, which is not a directory."
        )
    if (root_path / name).is_dir():
        return root_path / name
    if root_path.name == name:
        return root_path
    raise FileNotFoundError(
        f"The local data mirror {str(root_path)!r} (from `data_dir` or ${C.DATA_DIR_ENV}) has no {name!r} "
        "folder; point it at the folder that contains it."
    )


def mirror_only(name: str, data_dir: PathLike | None, hint: str) -> Path:
    """The local mirror of a dataset hist_sd cannot download; errors end with ``hint`` (what to put where)."""
    try:
        root = mirror_root(name, data_dir)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err} {hint}") from err
    if root is None:
        raise FileNotFoundError(f"No local data folder is set (`data_dir` or ${C.DATA_DIR_ENV}). {hint}")
    return root


def _download(url: str, dest: Path) -> None:
    """Stream ``url`` into ``dest`` (the only function that touches the network; tests replace it)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)


def fetch(source: Source, rel: str, *, cache_dir: PathLike | None = None) -> Path:
    """Return the cached copy of ``source``'s file ``rel``, downloading and checking it when needed.

    The file is written to a temporary name in the cache and renamed into place only once its sha256
    matches the registry, so the cache never holds a partial or corrupted file.
    """
    if rel not in source.sha256:
        raise KeyError(f"{rel!r} is not a registered file of the {source.name!r} dataset.")
    expected = source.sha256[rel]
    dest = cache_root(cache_dir) / source.name / rel
    if dest.is_file():
        if sha256(dest) == expected:
            return dest
        logger.warning("%s: cached file has the wrong sha256; downloading it again.", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = source.url(rel)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        logger.info("downloading %s", url)
        try:
            _download(url, tmp)
        except (OSError, urllib.error.URLError) as err:
            raise ConnectionError(
                f"Could not download {url} ({err}). Without network access, point hist_sd at a local copy "
                f"of the data with `data_dir=` or the ${C.DATA_DIR_ENV} environment variable "
                f"(a folder holding {source.name}/ in the layout of the original repository)."
            ) from err
        got = sha256(tmp)
        if got != expected:
            raise OSError(
                f"sha256 mismatch for {url}: expected {expected}, got {got}. The download is corrupted or "
                "the source changed; nothing was written to the cache."
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def locate(source: Source, rel: str, *, data_dir: PathLike | None = None, cache_dir: PathLike | None = None) -> Path:
    """Path of ``source``'s file ``rel``: from the local mirror when one is set, else downloaded to the cache."""
    root = mirror_root(source.name, data_dir)
    if root is not None:
        path = root / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"The local mirror {str(root)!r} has no file {rel!r}; it must keep the layout of the original "
                f"{source.name!r} data (or unset `data_dir`/${C.DATA_DIR_ENV} to download)."
            )
        return path
    return fetch(source, rel, cache_dir=cache_dir)
