"""HiST's outcome ConvNeXt-V2: masked pooling (padding never changes a score), heads, registry, errors."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import hist_sd as hs
from hist_sd.nn._convnext import GRN, OutcomeConvNeXt, OutcomeHead

SMALL = {"dims": [8, 16, 24, 32], "depths": [1, 1, 2, 1]}


def _maps(b: int = 3, g: int = 5, h: int = 37, w: int = 29, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, g, h, w, generator=gen)
    mask = torch.rand(b, h, w, generator=gen) > 0.3
    return x * mask[:, None], mask


@pytest.mark.parametrize("task", ["survival", "response"])
def test_padding_never_changes_a_score(task: str) -> None:
    torch.manual_seed(0)
    net = OutcomeConvNeXt(5, n_clinical=2, task=task, n_classes=3, **SMALL).eval()
    x, mask = _maps()
    clin = torch.randn(3, 2)
    ref = net(x, mask, clin)["logits"]
    for pad_w, pad_h in [(1, 0), (0, 5), (35, 60), (3, 27)]:
        xp, mp = F.pad(x, (0, pad_w, 0, pad_h)), F.pad(mask, (0, pad_w, 0, pad_h))
        torch.testing.assert_close(net(xp, mp, clin)["logits"], ref, rtol=1e-5, atol=1e-5)
    # whatever sits outside the mask is ignored
    noisy = torch.where(mask[:, None], x, torch.full_like(x, 7.0))
    torch.testing.assert_close(net(noisy, mask, clin)["logits"], ref, rtol=1e-5, atol=1e-5)
    # a slide scored alone or next to a larger slide (padded per batch) gets the same score
    big, big_mask = _maps(b=1, h=70, w=50, seed=1)
    both = torch.zeros(2, 5, 70, 50)
    both_mask = torch.zeros(2, 70, 50, dtype=torch.bool)
    both[0, :, :37, :29], both_mask[0, :37, :29] = x[0], mask[0]
    both[1], both_mask[1] = big[0], big_mask[0]
    out = net(both, both_mask, torch.stack([clin[0], clin[1]]))["logits"]
    torch.testing.assert_close(out[0], ref[0], rtol=1e-5, atol=1e-5)


def test_scores_depend_on_masked_values_and_clinical() -> None:
    torch.manual_seed(0)
    net = OutcomeConvNeXt(5, n_clinical=2, **SMALL).eval()
    x, mask = _maps()
    clin = torch.zeros(3, 2)
    a = net(x, mask, clin)["logits"]
    b = net(x * 2.0, mask, clin)["logits"]
    c = net(x, mask, clin + 1.0)["logits"]
    assert a.shape == (3, 1)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)


def test_training_mode_and_gradients() -> None:
    torch.manual_seed(0)
    net = OutcomeConvNeXt(5, drop_path=0.5, **SMALL).train()
    x, mask = _maps()
    out = net(x, mask)
    out["logits"].sum().backward()
    assert out["features"].shape == (3, 32)
    assert all(p.grad is not None for p in net.stem.parameters())


def test_heads() -> None:
    lin = OutcomeHead(4, n_clinical=2, hidden=0)
    assert len(lin.layers) == 1  # a linear Cox model
    mlp = OutcomeHead(4, n_clinical=2, hidden=8)
    assert any(isinstance(m, torch.nn.GELU) for m in mlp.layers)  # a non-linearity between the two layers
    resp = OutcomeHead(4, task="response", n_classes=3)
    assert resp(torch.randn(6, 4))["logits"].shape == (6, 3)
    assert mlp(torch.randn(6, 4), torch.randn(6, 2))["logits"].shape == (6, 1)


def test_grn_ignores_zero_cells() -> None:
    grn = GRN(4)
    with torch.no_grad():
        grn.gamma.fill_(0.5)
    x = torch.randn(2, 3, 3, 4)
    padded = F.pad(x, (0, 0, 0, 2, 0, 1))  # zero cells in H and W
    torch.testing.assert_close(grn(padded)[:, :3, :3], grn(x))


def test_registry_rebuilds_the_network() -> None:
    net = OutcomeConvNeXt(5, n_clinical=2, task="response", n_classes=3, **SMALL).eval()
    twin = hs.nn.build("OutcomeConvNeXt", net.hparams)
    twin.load_state_dict(net.state_dict())
    x, mask = _maps()
    clin = torch.randn(3, 2)
    torch.testing.assert_close(twin.eval()(x, mask, clin)["logits"], net(x, mask, clin)["logits"])
    assert "OutcomeHead" in hs.nn.MODELS


def test_errors() -> None:
    net = OutcomeConvNeXt(5, n_clinical=2, **SMALL)
    x, mask = _maps()
    with pytest.raises(ValueError, match="no valid cell"):
        net(x, torch.zeros_like(mask), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="clinical"):
        net(x, mask, torch.zeros(3, 1))
    with pytest.raises(ValueError, match="gene maps"):
        net(x[:, :2], mask, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="task"):
        OutcomeConvNeXt(5, task="grade")
    with pytest.raises(ValueError, match="4 stages"):
        OutcomeConvNeXt(5, dims=[8, 16])
