"""Shared parameter documentation is expanded into the verbs' docstrings."""

from __future__ import annotations

import pytest

import hist_sd as hs
from hist_sd._docs import PARAMS, doc_params


def test_placeholders_expand_to_the_shared_text() -> None:
    for fn in (hs.tl.predict, hs.tl.train, hs.pp.features, hs.get.predictions):
        assert "%(" not in fn.__doc__
    assert PARAMS["table_key"] in hs.tl.predict.__doc__ and PARAMS["device"] in hs.tl.train.__doc__
    assert "    table_key\n        " + PARAMS["tables_key"] in hs.tl.train.__doc__


def test_unknown_placeholder_is_an_error() -> None:
    def f() -> None:
        """Doc.

        Parameters
        ----------
        %(nope)s
        """

    with pytest.raises(KeyError, match="nope"):
        doc_params(f)
