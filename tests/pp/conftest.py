"""Fixtures shared by the preprocessing tests."""

from __future__ import annotations

import pytest

from hist_sd.io._wsi import SlideLevel


@pytest.fixture
def level_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The level of every read of a slide level."""
    reads: list[int] = []
    orig = SlideLevel.__getitem__

    def getitem(self, key):
        reads.append(self.level)
        return orig(self, key)

    monkeypatch.setattr(SlideLevel, "__getitem__", getitem)
    return reads
