from __future__ import annotations

import math

import pytest
import torch

from hist_sd.nn._mil import ABMIL, SNN, BagTransformer, GHANet, _topk_hyperedges, hyperedge_size

D = 12
SIZES = (3, 0, 5, 2)
CAB_PREFIXES = (
    "cab_proj.",
    "tokens",
    "cross_attn0.",
    "cross_attn1.",
    "ff0.",
    "ff1.",
    "cab_norm.",
    "recon_heads.",
)


def _ghanet(**kw) -> GHANet:
    opts = {"omic_sizes": SIZES, "dim": 16, "heads": 2, "dim_head": 8, "ratio": 0.3} | kw
    return GHANet(D, 4, **opts)


BAG_MODELS = {
    "ghanet": _ghanet,
    "ghanet_nocab": lambda: _ghanet(cab=False),
    "ghanet_nohyper": lambda: _ghanet(hyperedges=False),
    "abmil": lambda: ABMIL(D, 3, dim=16, hidden=8),
    "transformer": lambda: BagTransformer(D, 3, dim=16, layers=2, heads=4),
}


def _shapes(m: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(p.shape) for k, p in m.named_parameters()}


# --- shared bag behaviour ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAG_MODELS))
@pytest.mark.parametrize("no_grad", [False, True])
def test_padding_and_permutation_invariance(name: str, no_grad: bool) -> None:
    net = BAG_MODELS[name]().eval()
    bags = [torch.randn(n, D) for n in (7, 12, 1)]
    alone = [net(b[None])["logits"][0] for b in bags]
    n_pad = 15
    x = 1e4 * torch.randn(3, n_pad, D)  # huge padding values must not leak
    mask = torch.zeros(3, n_pad, dtype=torch.bool)
    for i, b in enumerate(bags):
        x[i, : len(b)], mask[i, : len(b)] = b, True
    with torch.set_grad_enabled(not no_grad):
        out = net(x, mask)
        x_nan = x.masked_fill(~mask[..., None], float("nan"))
        out_nan = net(x_nan, mask)
    for i in range(3):
        torch.testing.assert_close(out["logits"][i], alone[i], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_nan["logits"], out["logits"], rtol=0, atol=0)
    # scattering the real instances among the padding, in another order, changes nothing
    perm = torch.randperm(n_pad)
    out_perm = net(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out_perm["logits"], out["logits"], rtol=1e-5, atol=1e-5)
    if "attention" in out:
        att = out["attention"]
        assert att.shape == (3, n_pad)
        assert (att[~mask] == 0).all()
        torch.testing.assert_close(att.sum(1), torch.ones(3))
        torch.testing.assert_close(out_perm["attention"], att[:, perm], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(BAG_MODELS))
def test_gradients_reach_every_parameter(name: str) -> None:
    net = BAG_MODELS[name]().train()
    x = torch.randn(3, 9, D)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    out = net(x, mask)
    loss = out["logits"].square().sum() + sum(g.square().sum() for g in out.get("genomics", []))
    loss.backward()
    # the bias of an attention score shifts every logit of a softmax equally: its gradient is 0 by construction
    missing = [k for k, p in net.named_parameters()
               if (p.grad is None or not p.grad.abs().sum() > 0) and not k.endswith("score.bias")]
    # without the CAB all tokens are the same pooling, so token self-attention is uniform whatever q and k are
    assert missing == (["self_attn.to_q.weight", "self_attn.to_k.weight"] if name == "ghanet_nocab" else [])
    assert net(x)["logits"].shape == (3, 4 if name.startswith("ghanet") else 3)  # mask=None: all real


@pytest.mark.parametrize("name", list(BAG_MODELS))
def test_bag_errors(name: str) -> None:
    net = BAG_MODELS[name]()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="bag with no instances at batch index 1"):
        net(torch.randn(3, 5, D), mask)
    with pytest.raises(ValueError, match=f"in_channels={D}"):
        net(torch.randn(3, 5, D + 1))
    with pytest.raises(ValueError, match=r"\(B, N, C\)"):
        net(torch.randn(5, D))
    with pytest.raises(ValueError, match="bool tensor"):
        net(torch.randn(3, 5, D), torch.ones(3, 5))
    with pytest.raises(ValueError, match="bool tensor"):
        net(torch.randn(3, 5, D), torch.ones(3, 4, dtype=torch.bool))


@pytest.mark.parametrize("name", list(BAG_MODELS))
def test_hparams_rebuild(name: str) -> None:
    net = BAG_MODELS[name]().eval()
    again = type(net)(**net.hparams).eval()
    assert again.hparams == net.hparams
    again.load_state_dict(net.state_dict())
    x = torch.randn(2, 6, D)
    torch.testing.assert_close(again(x)["logits"], net(x)["logits"])


# --- G-HANet -------------------------------------------------------------------------------------------------


def test_ghanet_outputs() -> None:
    net = _ghanet().eval()
    x = torch.randn(2, 11, D)
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[0, 8:] = False
    out = net(x, mask)
    assert set(out) == {"logits", "genomics", "association", "attention"}
    assert out["logits"].shape == (2, 4)
    assert [tuple(g.shape) for g in out["genomics"]] == [(2, s) for s in SIZES]
    assert out["association"].shape == (2, len(SIZES), 11)
    assert (out["association"][0, :, 8:] == 0).all()
    assert net.hparams["omic_sizes"] == list(SIZES)
    # the 0-gene family has no reconstruction parameters
    assert not any(k.startswith("recon_heads.1.") for k, _ in net.named_parameters())

    nocab = _ghanet(cab=False).eval()(x, mask)
    assert nocab["genomics"] == [] and nocab["association"] is None
    assert GHANet(D, 2, cab=False, dim=16, heads=2, dim_head=8).n_tokens == 1


def test_hyperedge_size_floor_with_minimum_one() -> None:
    n = torch.tensor([1, 4, 5, 9, 10, 14, 100])
    assert hyperedge_size(n, 0.2).tolist() == [1, 1, 1, 1, 2, 2, 20]
    assert hyperedge_size(100, 0.29).item() == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert hyperedge_size(n, 1.0).tolist() == n.tolist()


def test_topk_hyperedges_ignore_padding() -> None:
    logits = torch.randn(2, 3, 12)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    logits[1, :, 9:] = 100.0  # padded instances with the highest logits are never chosen
    w = _topk_hyperedges(logits.requires_grad_(), mask, 0.25)
    assert not w.requires_grad
    chosen = w > 0
    assert chosen.sum(-1).tolist() == [[3] * 3, [2] * 3]  # floor(0.25 * 12) = 3, floor(0.25 * 9) = 2
    assert not chosen[1, :, 9:].any()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3))
    for b, k in ((0, 3), (1, 2)):
        real = logits[b, :, : int(mask[b].sum())].detach()
        top = real.topk(k, dim=-1)
        torch.testing.assert_close(w[b].gather(-1, top.indices), torch.softmax(top.values, -1))


def test_hyperedges_change_incidence() -> None:
    net = _ghanet().eval()
    nohyper = _ghanet(hyperedges=False).eval()
    nohyper.load_state_dict(net.state_dict())
    x = torch.randn(2, 20, D)
    assert not torch.allclose(net(x)["logits"], nohyper(x)["logits"])


def test_survival_gradient_reaches_cab_only_through_its_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    net = _ghanet().train()
    x = torch.randn(3, 10, D)
    out = net(x)
    # the survival logits do not depend on the association logits (the hyperedge weights are detached) ...
    assert (
        torch.autograd.grad(out["logits"].sum(), out["association"], allow_unused=True, retain_graph=True)[0]
        is None
    )
    # ... while the morphology attention does feed them
    assert torch.autograd.grad(out["logits"].sum(), out["attention"], retain_graph=True)[0] is not None

    cab = [p for k, p in net.named_parameters() if k.startswith(CAB_PREFIXES)]
    grads = torch.autograd.grad(out["logits"].sum(), cab, allow_unused=True)
    names = [k for k, _ in net.named_parameters() if k.startswith(CAB_PREFIXES)]
    reached = {k for k, g in zip(names, grads, strict=True) if g is not None and g.abs().sum() > 0}
    assert reached == {k for k in names if not k.startswith("recon_heads.")}  # through the CAB tokens
    # cut the CAB tokens out of the survival branch: no CAB parameter may receive any gradient
    real_cab = net._cab

    def cut(x: torch.Tensor, mask: torch.Tensor):
        tokens, association, genomics = real_cab(x, mask)
        return tokens.detach(), association, genomics

    monkeypatch.setattr(net, "_cab", cut)
    out = net(x)
    assert out["association"].requires_grad
    grads = torch.autograd.grad(out["logits"].sum(), cab, allow_unused=True)
    assert all(g is None for g in grads)


def test_ghanet_parameter_sets() -> None:
    full = _shapes(_ghanet())
    assert _shapes(_ghanet(hyperedges=False)) == full  # hyperedges have no parameters of their own
    nocab = _shapes(_ghanet(cab=False))
    assert nocab == {k: s for k, s in full.items() if not k.startswith(CAB_PREFIXES)}
    shared = _ghanet(shared_cross_attention=True)
    assert _shapes(shared) == {k: s for k, s in full.items() if not k.startswith("cross_attn1.")}
    n_ca = sum(math.prod(s) for k, s in full.items() if k.startswith("cross_attn0."))
    assert shared.n_parameters() == _ghanet().n_parameters() - n_ca
    assert shared(torch.randn(2, 5, D))["logits"].shape == (2, 4)


def test_ghanet_shared_cross_attention_uses_first_round() -> None:
    net = _ghanet(shared_cross_attention=True).eval()
    own = _ghanet().eval()
    state = net.state_dict()
    state.update(
        {k.replace("cross_attn0.", "cross_attn1."): v for k, v in state.items() if "cross_attn0." in k}
    )
    own.load_state_dict(state)
    x = torch.randn(2, 7, D)
    torch.testing.assert_close(own(x)["logits"], net(x)["logits"])


def test_ghanet_argument_errors() -> None:
    with pytest.raises(ValueError, match="omic_sizes"):
        GHANet(D, 4)
    with pytest.raises(ValueError, match=r"omic_sizes\[1\]"):
        GHANet(D, 4, omic_sizes=(3, -1))
    with pytest.raises(ValueError, match="ratio"):
        _ghanet(ratio=0.0)
    with pytest.raises(ValueError, match="ratio"):
        _ghanet(ratio=1.5)
    with pytest.raises(ValueError, match="dropout"):
        _ghanet(dropout=1.0)
    with pytest.raises(ValueError, match="cab"):
        _ghanet(cab=1)


# --- baselines -----------------------------------------------------------------------------------------------


def test_abmil_and_transformer_shapes() -> None:
    x = torch.randn(4, 9, D)
    out = ABMIL(D, 3, dim=16, hidden=8)(x)
    assert out["logits"].shape == (4, 3) and out["attention"].shape == (4, 9)
    assert set(BagTransformer(D, 2, dim=16)(x)) == {"logits"}
    with pytest.raises(ValueError, match="heads"):
        BagTransformer(D, 2, dim=18, heads=4)


def test_snn() -> None:
    torch.manual_seed(0)
    net = SNN(400, 4, hidden=(300, 300), dropout=0.25)
    assert net.hparams == {"in_channels": 400, "out_channels": 4, "hidden": [300, 300], "dropout": 0.25}
    first = net.net[0]
    assert first.bias.abs().sum() == 0
    assert abs(first.weight.std().item() * math.sqrt(400) - 1) < 0.02  # LeCun normal
    assert isinstance(net.net[2], torch.nn.AlphaDropout)
    # self-normalising: standardised inputs keep ~zero mean and unit variance through the SELU blocks
    h = net.net[:6].eval()(torch.randn(2000, 400))
    assert abs(h.mean().item()) < 0.1 and abs(h.std().item() - 1) < 0.1
    out = net(torch.randn(5, 400))
    assert out["logits"].shape == (5, 4)
    out["logits"].sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert SNN(10, 2, hidden=())(torch.randn(3, 10))["logits"].shape == (3, 2)
    rebuilt = type(net)(**net.hparams)
    assert _shapes(rebuilt) == _shapes(net)
    with pytest.raises(ValueError, match="in_channels=400"):
        net(torch.randn(5, 399))
    with pytest.raises(ValueError, match="hidden"):
        SNN(10, 2, hidden=(8, 0))
