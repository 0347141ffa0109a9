from __future__ import annotations

import json

import pytest
import torch

import hist_sd as hs
from hist_sd.models import MODELS, SpotGAT, SpotMLP, SpotTransformer, build, register_model


def _inputs(name: str) -> tuple:
    if name == "SpotMLP":
        return (torch.randn(7, 12),)
    if name == "SpotTransformer":
        return torch.randn(2, 7, 12), torch.randint(0, 10, (2, 7, 2))
    return torch.randn(7, 12), hs.models.spot_graph(torch.arange(7).numpy(), torch.zeros(7).numpy())


@pytest.mark.parametrize(
    "model",
    [
        SpotMLP(12, 3, hidden=16),
        SpotTransformer(12, 3, dim=16, heads=2, depth=1, max_grid=10),
        SpotGAT(12, 3, hidden=16, heads=2),
    ],
    ids=lambda m: type(m).__name__,
)
def test_build_round_trip(model: torch.nn.Module) -> None:
    name = type(model).__name__
    assert MODELS[name] is type(model)
    hp = json.loads(json.dumps(model.hparams))
    twin = build(name, hp)
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    args = _inputs(name)
    torch.testing.assert_close(twin(*args), model(*args), rtol=0, atol=0)
    assert twin.hparams == model.hparams


def test_build_errors() -> None:
    with pytest.raises(ValueError, match="Unknown model 'Nope'"):
        build("Nope", {})
    with pytest.raises(TypeError, match="SpotMLP"):
        build("SpotMLP", {"in_channels": 3, "out_channels": 2, "width": 5})


def test_register_model() -> None:
    class Custom(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.hparams = {"n": n}
            self.lin = torch.nn.Linear(n, n)

    try:
        assert register_model(Custom) is Custom
        assert isinstance(build("Custom", {"n": 3}), Custom)
        with pytest.raises(ValueError, match="already registered"):
            register_model(SpotMLP, "Custom")
    finally:
        MODELS.pop("Custom", None)
    with pytest.raises(TypeError):
        register_model(int)  # type: ignore[arg-type]
