"""benchmarks.accuracy: a model's difference to the first model, paired over fields."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import import_benchmark


@pytest.fixture(scope="module")
def accuracy():
    return import_benchmark("accuracy")


def _statistic(accuracy, values: np.ndarray):
    """A statistic of the `model_statistic` kind whose every entry is the mean of ``values``
    over the images drawn."""

    def statistic(i, g):
        return [float(values[i].mean())] * len(accuracy.MODEL_STATS)

    return statistic


def test_the_difference_is_paired_over_the_same_fields(accuracy):
    from miq.metrics import group_resamples

    rng = np.random.default_rng(4)
    fields = np.repeat(np.arange(6), 30)  # 6 fields of 30 images
    field_effect = rng.normal(0.0, 0.2, 6)[fields]  # what both models share, field by field
    reference = field_effect + rng.normal(0.0, 0.01, fields.size)
    candidate = field_effect + 0.03 + rng.normal(0.0, 0.01, fields.size)
    draws = group_resamples(fields, 400, seed=0)
    diff = accuracy.paired_difference(
        _statistic(accuracy, candidate),
        _statistic(accuracy, reference),
        fields,
        draws,
        intervals=True,
    )
    assert set(diff) == set(accuracy.PAIRED)
    ece = diff["ece"]
    assert ece["value"] == pytest.approx(candidate.mean() - reference.mean())
    # the shared field effect cancels: the paired interval is narrow and excludes 0 …
    assert 0.0 < ece["low"] < 0.03 < ece["high"] < 0.04
    # … where the two models' own intervals over the same draws overlap widely
    from miq.metrics import group_bootstrap

    own = [
        group_bootstrap(_statistic(accuracy, v), fields, resamples=draws)
        for v in (reference, candidate)
    ]
    assert own[1].low[0] < own[0].high[0]
    assert own[0].high[0] - own[0].low[0] > 5 * (ece["high"] - ece["low"])


def test_a_model_against_itself_differs_by_nothing_and_one_field_gives_no_interval(accuracy):
    from miq.metrics import group_resamples

    values = np.random.default_rng(1).random(40)
    fields = np.repeat(np.arange(4), 10)
    same = _statistic(accuracy, values)
    diff = accuracy.paired_difference(
        same, same, fields, group_resamples(fields, 50, seed=0), intervals=True
    )
    assert all(d == {"value": 0.0, "low": 0.0, "high": 0.0} for d in diff.values())
    one_field = accuracy.paired_difference(
        _statistic(accuracy, values + 0.5), same, np.zeros(40, int), [], intervals=False
    )
    assert one_field["exact"] == {"value": pytest.approx(0.5), "low": None, "high": None}
    assert accuracy._delta({"minus_first": one_field}, "exact") == "+0.500"
    assert accuracy._delta({"minus_first": diff}, "ece") == "+0.000 [+0.000, +0.000]"
    assert accuracy._delta({}, "ece") == "–"
