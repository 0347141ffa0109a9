from __future__ import annotations

import math

import pytest
import torch

from hist_sd.models import masked_bce_with_logits, masked_mse


def _grid() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pred = torch.randn(2, 3, 4, 5, requires_grad=True)
    target = torch.randn(2, 3, 4, 5)
    mask = torch.rand(2, 4, 5) > 0.5
    return pred, target, mask


def test_masked_mse_hand_computed() -> None:
    pred = torch.tensor([[[[1.0, 2.0]]], [[[0.0, 5.0]]]])  # (2, 1, 1, 2)
    pred = torch.cat([pred, 2 * pred], dim=1)  # (2, 2, 1, 2)
    target = torch.zeros_like(pred)
    mask = torch.tensor([[[True, False]], [[False, True]]])
    # selected: (b0, x0) -> channels (1, 2); (b1, x1) -> channels (5, 10)
    expected = (1 + 4 + 25 + 100) / 4
    assert masked_mse(pred, target, mask).item() == pytest.approx(expected)


def test_masked_mse_ignores_unmasked_values_and_gradients() -> None:
    pred, target, mask = _grid()
    loss = masked_mse(pred, target, mask)
    loss.backward()
    grad = pred.grad.clone()
    sel = mask[:, None].expand_as(pred)
    assert (grad[~sel] == 0).all()
    # garbage (even NaN / inf) in padded cells changes nothing
    pred2 = pred.detach().clone()
    target2 = target.clone()
    pred2[~sel] = float("nan")
    target2[~sel] = float("inf")
    pred2.requires_grad_(True)
    loss2 = masked_mse(pred2, target2, mask)
    loss2.backward()
    assert loss2.item() == loss.item()
    torch.testing.assert_close(pred2.grad, grad, rtol=0, atol=0)
    # and equals the plain MSE over the selected entries
    ref = ((pred.detach() - target)[sel] ** 2).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_masked_mse_channels_last_layouts() -> None:
    pred = torch.randn(2, 6, 3)
    target = torch.randn(2, 6, 3)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    expected = ((pred - target)[mask] ** 2).mean()
    assert masked_mse(pred, target, mask).item() == pytest.approx(expected.item())
    flat = masked_mse(pred[0], target[0], torch.ones(6, dtype=torch.bool))
    assert flat.item() == pytest.approx(((pred[0] - target[0]) ** 2).mean().item())
    assert masked_mse(pred, target, None).item() == pytest.approx(((pred - target) ** 2).mean().item())


def test_masked_loss_errors() -> None:
    pred, target, mask = _grid()
    with pytest.raises(ValueError, match="selects no position"):
        masked_mse(pred, target, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="bool"):
        masked_mse(pred, target, mask.float())
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        masked_mse(pred, target, mask[:, :3])
    with pytest.raises(ValueError, match="same shape"):
        masked_mse(pred, target[:1], mask)
    with pytest.raises(ValueError, match="selects no position"):
        masked_bce_with_logits(pred, target, torch.zeros_like(mask))


def test_masked_bce_hand_computed_and_pos_weight() -> None:
    logits = torch.tensor([[0.0, 2.0], [-1.0, 3.0], [7.0, 7.0]])  # (N=3, C=2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([True, True, False])

    def bce(z: float, y: float, w: float = 1.0) -> float:
        s = 1 / (1 + math.exp(-z))
        return -(w * y * math.log(s) + (1 - y) * math.log(1 - s))

    expected = (bce(0, 1) + bce(2, 0) + bce(-1, 0) + bce(3, 1)) / 4
    assert masked_bce_with_logits(logits, target, mask).item() == pytest.approx(expected, rel=1e-6)
    expected_w = (bce(0, 1, 3) + bce(2, 0) + bce(-1, 0) + bce(3, 1, 3)) / 4
    got = masked_bce_with_logits(logits, target, mask, pos_weight=3.0)
    assert got.item() == pytest.approx(expected_w, rel=1e-6)
    per_channel = masked_bce_with_logits(logits, target, mask, pos_weight=torch.tensor([3.0, 1.0]))
    assert per_channel.item() == pytest.approx(
        (bce(0, 1, 3) + bce(2, 0) + bce(-1, 0) + bce(3, 1)) / 4, rel=1e-6
    )
    with pytest.raises(ValueError, match="pos_weight"):
        masked_bce_with_logits(logits, target, mask, pos_weight=torch.ones(5))


def test_masked_bce_ignores_padding_on_grid() -> None:
    pred, target, mask = _grid()
    target = (target > 0).float()
    loss = masked_bce_with_logits(pred, target, mask)
    pred2 = pred.detach().clone()
    sel = mask[:, None].expand_as(pred)
    pred2[~sel] = 1e6
    target2 = target.clone()
    target2[~sel] = float("nan")
    assert masked_bce_with_logits(pred2, target2, mask).item() == loss.item()
