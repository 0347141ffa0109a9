from __future__ import annotations

import json

import pytest
import torch

import hist_sd as hs
from hist_sd.models import ConvMixerBlock, HiSTNet, MultiScaleAttentionGate


def _count(model: torch.nn.Module, cls: type) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("upsample", ["nearest", "bilinear", "transpose"])
@pytest.mark.parametrize("in_proj", [None, 8])
def test_tiny_shapes(upsample: str, in_proj: int | None) -> None:
    net = HiSTNet.from_preset("tiny", 24, 5, upsample=upsample, in_proj=in_proj)
    out = net(torch.randn(3, 24, 8, 12))
    assert out.shape == (3, 5, 8, 12)
    assert torch.isfinite(out).all()


def test_small_preset_on_efficientnet_sized_input() -> None:
    net = HiSTNet.from_preset("small", 1280, 7)
    assert net.hparams["base_width"] == 16 and net.hparams["depth"] == 5
    assert net.multiple == 16
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1280, 16, 32))
    assert out.shape == (1, 7, 16, 32)


def test_paper_preset_architecture() -> None:
    net = HiSTNet.from_preset("paper", 8, 2)
    widths = [blk[0].out_channels for blk in net.encoder]
    assert widths == [64, 128, 256, 512, 1024]
    assert _count(net, ConvMixerBlock) == 7
    assert _count(net, MultiScaleAttentionGate) == 4
    mixer = next(m for m in net.modules() if isinstance(m, ConvMixerBlock))
    assert mixer.depthwise[0].kernel_size == (7, 7) and mixer.depthwise[0].groups == 1024
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 8, 16, 16)).shape == (1, 2, 16, 16)


@pytest.mark.parametrize(("h", "w"), [(6, 8), (8, 10), (2, 4)])
def test_bad_grid_size_names_multiple(h: int, w: int) -> None:
    net = HiSTNet.from_preset("tiny", 4, 1)
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 4, h, w))


def test_bad_inputs() -> None:
    net = HiSTNet.from_preset("tiny", 4, 1)
    with pytest.raises(ValueError, match="in_channels=4"):
        net(torch.randn(1, 5, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        net(torch.randn(4, 8, 8))
    with pytest.raises(ValueError, match="convmixer_kernel"):
        HiSTNet(4, 1, convmixer_kernel=4)
    with pytest.raises(ValueError, match="depth"):
        HiSTNet(4, 1, depth=1)
    with pytest.raises(ValueError, match="in_channels"):
        HiSTNet(0, 1)
    with pytest.raises(ValueError, match="upsample"):
        HiSTNet(4, 1, upsample="cubic")
    with pytest.raises(ValueError, match="preset"):
        HiSTNet.from_preset("huge", 4, 1)


def test_attention_gate_range_and_effect() -> None:
    gate = MultiScaleAttentionGate(6)
    x = torch.randn(2, 6, 8, 8) * 3
    a = gate.gate(x)
    assert a.shape == x.shape
    assert (a >= 0).all() and (a <= 1).all()
    assert a.std() > 0  # a real, position-dependent map
    y = gate(x)
    torch.testing.assert_close(y, x * (1 + a))
    assert not torch.allclose(y, x)


def test_attention_gate_is_multiscale() -> None:
    gate = MultiScaleAttentionGate(3)
    convs = [m for m in gate.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sorted((c.kernel_size[0], c.dilation[0]) for c in convs) == [(1, 1), (1, 1), (3, 1), (3, 2)]
    assert convs[-1].in_channels == 9  # the 1x1 "vote" over the concatenated branches


def test_ablations_change_structure_not_shapes() -> None:
    x = torch.randn(2, 10, 8, 8)
    full = HiSTNet.from_preset("tiny", 10, 3)
    no_att = HiSTNet.from_preset("tiny", 10, 3, attention=False)
    no_mix = HiSTNet.from_preset("tiny", 10, 3, convmixer=False)
    assert _count(full, MultiScaleAttentionGate) == 2 and _count(full, ConvMixerBlock) == 2
    assert _count(no_att, MultiScaleAttentionGate) == 0 and _count(no_att, ConvMixerBlock) == 2
    assert _count(no_mix, ConvMixerBlock) == 0 and _count(no_mix, MultiScaleAttentionGate) == 2
    assert no_att.n_parameters() < full.n_parameters() and no_mix.n_parameters() < full.n_parameters()
    for net in (full, no_att, no_mix):
        assert net(x).shape == (2, 3, 8, 8)


@pytest.mark.parametrize("kw", [{}, {"attention": False, "convmixer": False, "dropout": 0.2, "in_proj": 6}])
def test_hparams_rebuild_identical(kw: dict) -> None:
    net = HiSTNet.from_preset("tiny", 10, 3, **kw)
    net.train()
    net(torch.randn(4, 10, 8, 8))  # update BatchNorm running stats so the buffers are non-trivial
    hp = json.loads(json.dumps(net.hparams))
    assert hp == net.hparams
    twin = type(net)(**hp)
    twin2 = hs.models.build("HiSTNet", hp)
    x = torch.randn(2, 10, 8, 8)
    for t in (twin, twin2):
        t.load_state_dict(net.state_dict())
        net.eval(), t.eval()
        torch.testing.assert_close(t(x), net(x), rtol=0, atol=0)


def test_loss_decreases_when_training() -> None:
    net = HiSTNet.from_preset("tiny", 6, 2)
    x = torch.randn(4, 6, 8, 8)
    y = x[:, :2] * 2 + 1
    mask = torch.rand(4, 8, 8) > 0.3
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = hs.models.masked_mse(net(x), y, mask)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]
    # every parameter received a gradient
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
