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


def test_the_pooled_set_gathers_its_members_images_and_keeps_their_fields(accuracy):
    from pathlib import Path

    a = accuracy.DataSet("a", ["i1", "i2"], ["f1", "f1"], [Path("x")], {"n_fields": 1})
    b = accuracy.DataSet("b", ["i3"], ["f2"], [Path("y")], {"n_fields": 1})
    pooled = accuracy.pooled_set("a + b", [a, b])
    assert pooled.items == ["i1", "i2", "i3"] and pooled.fields == ["f1", "f1", "f2"]
    assert pooled.files == [Path("x"), Path("y")] and pooled.info["n_fields"] == 2
    assert pooled.gathers == ("a", "b") and a.gathers == ("a",)


def _entry(members=(), **model):
    return {"members": list(members), "models": {"m": model}}


def test_the_targets_pass_or_fail_on_the_set_each_names_and_pooled_sets_are_not_counted_twice(
    accuracy,
):
    pooled = {
        "gross_errors": {"high": 0, "low": 1},
        "within_one": {"value": 0.995},
        "exact": {"value": 0.84},
        "field_ce": {"value": 0.08},
    }
    analysis = {
        "8 held-out planes": _entry(gross_errors={"high": 0, "low": 1}),
        accuracy.POOLED: _entry(["8 held-out planes"], **pooled),
        "held out by lab: somewhere": _entry(
            within_one={"value": 0.96},
            field_ce={"value": 0.10004},
            seen_in_training={"seen": ["a"]},
        ),
        "deconwolf DAPI stack": _entry(best_plane_error_best_focus=1.0),
    }
    rows = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |")
        for line in accuracy.goal_lines(analysis, ["m"])[4:]
    }
    assert rows["no gross error"] == "FAIL (1)"
    assert rows["within-one ≥ 0.99"] == "PASS (0.995)"
    assert rows["exact ≥ 0.85"] == "FAIL (0.840)"
    assert rows["field CE ≤ 0.08"] == "PASS (0.080)"  # the bound is inclusive
    assert rows["ECE ≤ 0.05"] == "–"  # not in the analysis: neither pass nor fail
    assert rows["held out by lab: within-one ≥ 0.97"] == "FAIL (0.960; not held out)"
    # 0.100 would read as a pass: the digit that decides is shown
    assert rows["held out by lab: field CE ≤ 0.10"] == "FAIL (0.10004; not held out)"
    assert rows["deconwolf stack: `miq best-focus` within one plane"] == "PASS (1 plane(s))"
    assert rows["BBBC006: every z00 image rated ≥ 8"] == "–"
    (gross,) = accuracy.gross_lines(analysis, ["m"])
    assert gross.startswith("gross-error check, m: 1 in all") and "all held-out" not in gross
