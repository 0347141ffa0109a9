"""Results never replace inputs; parameters are stored without the string 'None'."""

from __future__ import annotations

import numpy as np
import pytest
from anndata import AnnData

from hist_sd._core._params import check_key_free, input_keys, store_params


def test_inputs_are_protected_even_with_overwrite(sections):
    ad = sections["A1"]
    obsm = input_keys(ad, "obsm")
    assert {"spatial", "X_hist"} <= obsm  # coordinates and features
    assert {"in_tissue", "array_row", "section"} <= input_keys(ad, "obs")
    for where, key in (("obsm", "spatial"), ("obsm", "X_hist"), ("obs", "in_tissue"), ("layers", "counts")):
        with pytest.raises(KeyError, match="holds an input"):
            check_key_free(getattr(ad, where), key, where, overwrite=True, protected=input_keys(ad, where))
    check_key_free(ad.obsm, "hist_pred", "obsm", overwrite=True, protected=obsm)  # results are fine


def test_none_is_left_out_not_stored_as_text():
    ad = AnnData(np.zeros((2, 1)))
    store_params(ad, "step", {"a": None, "b": 1, "c": {"d": None, "e": "x"}, "f": [None, "y"]}, extra=None)
    assert ad.uns["step"]["params"] == {"b": 1, "c": {"e": "x"}, "f": ["y"]} or (
        ad.uns["step"]["params"]["b"] == 1 and "a" not in ad.uns["step"]["params"]
    )
    assert "extra" not in ad.uns["step"] and "None" not in str(ad.uns["step"])
