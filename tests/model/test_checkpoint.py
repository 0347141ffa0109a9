"""Broken checkpoints are refused at load with an error naming the file and what is wrong."""

from __future__ import annotations

import pytest
import torch

import hist_sd as hs


@pytest.fixture
def saved(recorded, genes, tmp_path):
    model = hs.tl.train([recorded["A1"], recorded["B1"]], genes=genes, method="mlp", epochs=2, progress=False)
    return model.save(tmp_path / "m.pt")


def test_nan_weights_are_refused_at_load(saved, tmp_path):
    state = torch.load(saved, weights_only=True)
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = torch.full_like(state["state_dict"][name], float("nan"))
    torch.save(state, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=rf"nan\.pt.*NaN or infinite values in state_dict\['{name}'\]"):
        hs.tl.load_model(tmp_path / "nan.pt")
    state = torch.load(saved, weights_only=True)
    state["feature_std"][0] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    with pytest.raises(ValueError, match="feature_std"):
        hs.tl.load_model(tmp_path / "inf.pt")


def test_checkpoint_without_genes_names_what_is_missing(saved, tmp_path):
    state = torch.load(saved, weights_only=True)
    del state["genes"]
    torch.save(state, tmp_path / "nogenes.pt")
    with pytest.raises(ValueError, match=r"nogenes\.pt.*lacks 'genes'"):
        hs.tl.load_model(tmp_path / "nogenes.pt")
