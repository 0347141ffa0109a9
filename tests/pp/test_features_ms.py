"""hs.pp.features with several patch sizes (multi-scale context) and test-time dihedral views, on the real her2st
B4 section (a few spots) and a real whole slide's pyramid."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from spatialdata import SpatialData

import hist_sd as hs
from hist_sd._core._image import get_image
from hist_sd.encoders._patches import DIHEDRAL, PatchReader, dihedral_views, to_model_input

IDX = [3, 60, 140, 230]  # four spots spread over B4


def _small(b4, idx) -> SpatialData:
    """A SpatialData sharing B4's image, with a copy of some table rows (the fixture is not touched)."""
    t = b4.tables["table"]
    key = t.uns["hist_sd"]["image_key"]
    return SpatialData(images={key: b4.images[key]}, tables={"table": t[np.asarray(idx)].copy()})


def _net() -> torch.nn.Module:
    """A small conv encoder that is not flip-invariant (5-d features)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(5, 5, 3),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    return _net()


def _feats(sd, net, **kwargs) -> np.ndarray:
    key = kwargs.pop("key_added", "f")
    hs.pp.features(sd, encoder=net, backend="torch", progress=False, key_added=key,
                   encoder_kwargs={"input_size": 48, "name": "tiny"}, **kwargs)
    return sd.tables["table"].obsm[key]


def test_concentric_sizes_are_the_pixels_of_separate_readers(b4):
    """Sizes cut from one read of the largest window equal each size read alone, also over the image border and
    for centres that round differently per size."""
    img = get_image(b4, table=b4.tables["table"])
    crop = np.asarray(img.data[:, :2500, :3000])  # decoded once; the readers below cut it in memory
    xy = np.array([[0.0, 0.0], [2999.0, 2499.0], [1000.5, 1200.5], [1500.3, 999.7], [2900.0, 300.0], [700.0, 2000.0]])
    sizes = [145, 290, 581, 64]
    multi = PatchReader(crop, xy, sizes, 72)
    got = multi.read_sizes(np.arange(len(xy)))
    assert got.shape == (len(xy), 4, 72, 72, 3) and multi.patch_px == 581
    for j, p in enumerate(sizes):
        np.testing.assert_array_equal(got[:, j], PatchReader(crop, xy, p, 72).read(np.arange(len(xy))))
    np.testing.assert_array_equal(multi.read_sizes([2, 0], which=[3, 1]), got[[2, 0]][:, [3, 1]])
    np.testing.assert_array_equal(multi.read([1]), got[[1], 0])  # read(): the first size
    # the same from the lazily decoded JPEG (one window for all sizes), away from the crop's right/bottom edge
    lazy = PatchReader(img, xy[[0, 2, 3, 5]], sizes, 72)
    np.testing.assert_array_equal(lazy.read_sizes(np.arange(4)), got[[0, 2, 3, 5]])
    assert lazy.reads == 1


def test_dihedral_views_by_hand():
    p = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)
    hand = [p, p[:, :, ::-1], p[:, ::-1], np.rot90(p, 2, axes=(1, 2))]
    hand += [np.swapaxes(v, 1, 2) for v in hand]
    for k in (1, 2, 4, 8):
        v = dihedral_views(p, k)
        assert v.shape == (2 * k, 3, 3, 3) and v.flags["C_CONTIGUOUS"]
        for i in range(k):  # patch-major: the views of patch 0, then of patch 1
            np.testing.assert_array_equal(v[i::k], hand[i])
    assert len({DIHEDRAL[i](p).tobytes() for i in range(8)}) == 8  # the 8 elements of the group
    assert dihedral_views(p, 1) is p
    with pytest.raises(ValueError, match="views"):
        dihedral_views(p, 3)


def test_multiscale_is_the_concatenation_of_single_scale_calls(b4, net, tmp_path):
    sd = _small(b4, IDX)
    t = sd.tables["table"]
    single = {s: _feats(sd, net, patch_um=s, key_added=f"s{s}") for s in (100, 200, 400)}
    multi = _feats(sd, net, patch_um=(100, 200, 400), batch_size=8)
    assert multi.shape == (4, 15) and multi.dtype == np.float32
    np.testing.assert_allclose(multi, np.hstack([single[s] for s in (100, 200, 400)]), rtol=1e-5, atol=1e-6)
    p = t.uns["f"]["params"]
    mpp = t.uns["hist_sd"]["mpp"]
    assert list(p["patch_um"]) == [100.0, 200.0, 400.0] and p["dim"] == 5 and p["views"] == 1
    assert list(p["patch_px"]) == [round(s / mpp) for s in (100, 200, 400)]
    blocks = p["blocks"]
    assert list(blocks["patch_um"]) == [100.0, 200.0, 400.0]
    assert list(blocks["start"]) == [0, 5, 10] and list(blocks["stop"]) == [5, 10, 15]
    for s, i0, i1 in zip(blocks["patch_um"], blocks["start"], blocks["stop"], strict=True):
        np.testing.assert_allclose(multi[:, i0:i1], single[int(s)], rtol=1e-5, atol=1e-6)
    # the given order is kept, and batches of any size give the same features
    rev = _feats(sd, net, patch_um=[400, 100], batch_size=3, num_workers=2, key_added="rev")
    np.testing.assert_allclose(rev, np.hstack([single[400], single[100]]), rtol=1e-5, atol=1e-6)
    assert list(t.uns["rev"]["params"]["blocks"]["patch_um"]) == [400.0, 100.0]
    assert "blocks" not in t.uns["s100"]["params"] and t.uns["s100"]["params"]["patch_um"] == 100.0
    # the record survives h5ad (a list of dictionaries would not)
    t.write_h5ad(tmp_path / "t.h5ad")
    back = ad.read_h5ad(tmp_path / "t.h5ad").uns["f"]["params"]
    assert list(back["blocks"]["start"]) == [0, 5, 10] and list(back["patch_um"]) == [100.0, 200.0, 400.0]


def test_views_are_the_mean_of_transformed_patches(b4, net):
    sd = _small(b4, IDX)
    t = sd.tables["table"]
    one = _feats(sd, net, key_added="v1")
    hs.pp.features(sd, encoder=net, backend="torch", progress=False, key_added="plain",
                   encoder_kwargs={"input_size": 48, "name": "tiny"})
    assert np.array_equal(one, t.obsm["plain"]) and t.uns["v1"]["params"]["views"] == 1  # views=1 is the default
    two = _feats(sd, net, views=2, key_added="v2")
    assert t.uns["v2"]["params"]["views"] == 2
    enc = hs.pp.get_encoder(net, input_size=48)
    patches = PatchReader(get_image(sd, table=t), t.obsm["spatial"], round(100 / t.uns["hist_sd"]["mpp"]), 48).read(
        np.arange(4))
    with torch.no_grad():
        by_view = [net(to_model_input(np.ascontiguousarray(v), enc.mean, enc.std)).numpy()
                   for v in (patches, patches[:, :, ::-1])]
    np.testing.assert_allclose(one, by_view[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(two, (by_view[0] + by_view[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(two, one, atol=1e-3)  # the encoder is not flip-invariant
    eight = _feats(sd, net, views=8, patch_um=(100, 200), batch_size=4, key_added="v8")
    four = _feats(sd, net, views=4, patch_um=(100, 200), batch_size=4, key_added="v4")
    assert eight.shape == four.shape == (4, 10)
    assert not np.allclose(eight, four, atol=1e-4)


def test_scales_and_views_on_both_backends(b4, net):
    """Two sizes and two views: torch and ONNX Runtime agree, and multi-scale equals the single-scale calls."""
    sd = _small(b4, IDX[:3])
    t = sd.tables["table"]
    kw = {"encoder": net, "progress": False, "encoder_kwargs": {"input_size": 48, "name": "tiny-features-ms"}}
    for backend in ("torch", "onnx"):
        hs.pp.features(sd, patch_um=(100, 200), views=2, backend=backend, key_added=backend, **kw)
        assert t.uns[backend]["params"]["backend"] == backend
    assert t.obsm["torch"].shape == (3, 10)
    np.testing.assert_allclose(t.obsm["onnx"], t.obsm["torch"], rtol=1e-5, atol=1e-5)
    hs.pp.features(sd, patch_um=200, views=2, backend="onnx", key_added="s200", **kw)
    np.testing.assert_allclose(t.obsm["onnx"][:, 5:], t.obsm["s200"], rtol=1e-5, atol=1e-6)


def test_whole_slide_sizes_come_from_their_own_pyramid_levels(pyramid_tiff: Path, level_reads: list[int], net):
    """On a pyramid, 500 µm patches come from level 1 (250 px >= 224) and 100 µm ones from level 0 (200 px), as in
    single-size calls, whose features they equal."""
    sdata = hs.io.read_wsi(pyramid_tiff, name="pyr")
    hs.pp.tile(sdata, tile_um=500.0)
    t = sdata.tables["tiles"]
    few = SpatialData(images=dict(sdata.images), tables={"tiles": t[:3].copy()}, attrs=dict(sdata.attrs))
    kw = {"encoder": net, "table_key": "tiles", "backend": "torch", "progress": False,
          "encoder_kwargs": {"input_size": 224, "name": "tiny"}}
    level_reads.clear()
    hs.pp.features(few, patch_um=(500.0, 100.0), views=2, key_added="ms", **kw)
    assert set(level_reads) == {0, 1}
    for s in (500.0, 100.0):
        hs.pp.features(few, patch_um=s, views=2, key_added=f"s{s:g}", **kw)
    x = few.tables["tiles"].obsm
    np.testing.assert_allclose(x["ms"], np.hstack([x["s500"], x["s100"]]), rtol=1e-5, atol=1e-6)


def test_bad_sizes_and_views(b4, net):
    sd = _small(b4, IDX[:2])
    t = sd.tables["table"]
    for bad, match in [
        ((100, -50), "`patch_um` must be a positive"),
        ((100, 0), "`patch_um` must be a positive"),
        ((100, 200, 100), "`patch_um` must not repeat a size"),
        ((100, 99.8), r"`patch_um`=\[100.0, 99.8\] µm gives patches of \[145, 145\] px"),
        ((), "non-empty sequence"),
        ([[100, 200]], "non-empty sequence"),
        ((100, 20_000), "larger than the image"),
    ]:
        with pytest.raises(ValueError, match=match):
            _feats(sd, net, patch_um=bad)
    for bad in (0, 3, 16, True, 2.0):
        with pytest.raises(ValueError, match=r"`views` must be one of \[1, 2, 4, 8\]"):
            _feats(sd, net, views=bad)
    assert "f" not in t.obsm and "f" not in t.uns
