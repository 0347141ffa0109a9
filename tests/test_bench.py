"""The her2st benchmark's configuration: feature caches per option set, levers one change from the main input."""

from __future__ import annotations

import numpy as np
import pytest

from hist_sd import _bench


def test_feature_tags_tell_option_sets_apart():
    main = _bench.feature_tag(_bench.MAIN_FEATURES)
    assert main == _bench.MAIN_FEATURES["encoder"]
    tags = {_bench.feature_tag({**_bench.MAIN_FEATURES, **change}) for change, _ in _bench.LEVERS.values()}
    changed = [c for c, _ in _bench.LEVERS.values() if c]
    assert len(tags - {main}) == len(changed)  # every change of input has a cache of its own
    assert _bench.feature_tag({"encoder": "efficientnet-lite0", "patch_um": np.array([100.0, 200.0]), "views": 4}) == (
        "efficientnet-lite0_p100-200_v4")


def test_every_lever_changes_exactly_one_thing():
    for name, (features, training) in _bench.LEVERS.items():
        assert bool(features) != bool(training), name
        assert len(features) + len(training) == 1, name
        for key, value in features.items():
            assert _bench.MAIN_FEATURES.get(key) != value, name


def test_unknown_levers_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="`levers`: unknown.*'wider'"):
        _bench.run_benchmark(tmp_path / "out", levers=["wider"])
    assert not (tmp_path / "out").exists()
