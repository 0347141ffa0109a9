"""The download path, exercised without network: the fetch function copies from the local mirror."""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import hist_sd as hs
from hist_sd._core._files import sha256
from hist_sd.datasets import _fetch


@pytest.fixture
def offline_mirror(data_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No local mirror configured; `_download` serves the mirror's files by URL and records the calls."""
    monkeypatch.delenv("HIST_SD_DATA_DIR", raising=False)
    monkeypatch.setenv("HIST_SD_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[str] = []
    by_url = {_fetch.HER2ST.url(rel): data_dir / "her2st" / rel for rel in _fetch.HER2ST_SHA256}
    by_url.update({_fetch.GENE_POSITIONS.url(rel): data_dir / "gene_positions" / rel for rel in _fetch.XCLONE_SHA256})

    def fake_download(url: str, dest: Path) -> None:
        calls.append(url)
        shutil.copyfile(by_url[url], dest)

    monkeypatch.setattr(_fetch, "_download", fake_download)
    return calls


def test_registry_matches_mirror(data_dir: Path):
    """Every file the downloader fetches has a pinned sha256, equal to the byte-for-byte mirror copy."""
    assert len(_fetch.HER2ST_SHA256) == 30 + 30 + 6 + 7
    for rel, digest in _fetch.HER2ST_SHA256.items():
        assert sha256(data_dir / "her2st" / rel) == digest, rel
        assert _fetch.HER2ST.url(rel).startswith(
            "https://raw.githubusercontent.com/almaan/her2st/85df7411b987a7dec3feff9718b869a7a82091ec/data/"
        )
    for rel, digest in _fetch.XCLONE_SHA256.items():
        assert sha256(data_dir / "gene_positions" / rel) == digest, rel


def test_download_path(offline_mirror: list[str], tmp_path: Path, data_dir: Path):
    sd = hs.datasets.her2st("B1")["B1"]
    t = sd.tables["table"]
    assert t.n_obs == 295 and t.obs["label"].notna().all()
    cache = tmp_path / "cache" / "her2st" / "data"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == [
        "B1.tsv.gz",
        "B1_labeled_coordinates.tsv",
        "B1_selection.tsv",
    ]
    assert len(offline_mirror) == 3
    hs.datasets.her2st("B1")  # served from the cache: nothing downloaded again
    assert len(offline_mirror) == 3
    ref = hs.datasets.her2st("B1", data_dir=data_dir)["B1"].tables["table"]
    assert (ref.X != t.X).nnz == 0
    # an explicit cache_dir wins over $HIST_SD_CACHE_DIR
    path = _fetch.fetch(_fetch.GENE_POSITIONS, "annotate_genes_mm10.txt", cache_dir=tmp_path / "other")
    assert path == tmp_path / "other" / "gene_positions" / "annotate_genes_mm10.txt" and path.is_file()
    assert hs.datasets.gene_positions("hg38").loc["ERBB2", "chromosome"] == "chr17"


def test_corrupted_download_is_rejected(offline_mirror, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    real = _fetch._download

    def corrupting(url: str, dest: Path) -> None:
        real(url, dest)
        with open(dest, "ab") as fh:
            fh.write(b"\0")

    monkeypatch.setattr(_fetch, "_download", corrupting)
    with pytest.raises(OSError, match="sha256 mismatch"):
        hs.datasets.her2st("C1")
    folder = tmp_path / "cache" / "her2st" / "data" / "ST-cnts"
    assert list(folder.iterdir()) == []  # nothing (not even a partial file) left in the cache


def test_corrupted_cache_is_refetched(offline_mirror, tmp_path: Path):
    rel = "data/ST-spotfiles/C1_selection.tsv"
    path = _fetch.fetch(_fetch.HER2ST, rel)
    path.write_text("garbage")
    again = _fetch.fetch(_fetch.HER2ST, rel)
    assert again == path and sha256(path) == _fetch.HER2ST_SHA256[rel]
    assert len(offline_mirror) == 2
    with pytest.raises(KeyError, match="not a registered file"):
        _fetch.fetch(_fetch.HER2ST, "data/ST-cnts/A1.tsv.gz")


def test_offline_without_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HIST_SD_DATA_DIR", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(ConnectionError, match=r"data_dir=.*HIST_SD_DATA_DIR"):
        hs.datasets.her2st("B1", cache_dir=tmp_path)
    with pytest.raises(ConnectionError, match="HIST_SD_DATA_DIR"):
        hs.datasets.gene_positions(cache_dir=tmp_path)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_cache_dir_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("HIST_SD_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _fetch.cache_root() == tmp_path / ".cache" / "hist_sd"
    monkeypatch.setenv("HIST_SD_CACHE_DIR", str(tmp_path / "c"))
    assert _fetch.cache_root() == tmp_path / "c"
    assert _fetch.cache_root(tmp_path / "x") == tmp_path / "x"
