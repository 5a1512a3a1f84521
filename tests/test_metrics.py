"""Metrics of miq.metrics against hand-computed values and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest

from miq.metrics import (
    accuracy_within,
    best_threshold,
    calibration,
    confusion_matrix,
    f_score,
    roc_auc,
    spearman,
    split_f_score,
)


def test_confusion_and_accuracy():
    truth, pred = [0, 1, 2, 2, 10], [0, 2, 2, 0, 9]
    cm = confusion_matrix(truth, pred)
    assert cm.sum() == 5 and cm[2, 0] == 1 and cm[10, 9] == 1
    assert accuracy_within(truth, pred, 0) == pytest.approx(2 / 5)
    assert accuracy_within(truth, pred, 1) == pytest.approx(4 / 5)
    with pytest.raises(ValueError):
        confusion_matrix([0, 11], [0, 0])


def test_f_score_by_hand():
    y = [1, 1, 1, 0, 0]
    p = [1, 1, 0, 1, 0]  # TP 2, FP 1, FN 1
    assert f_score(y, p) == pytest.approx(4 / 6)
    assert f_score([0, 0], [0, 0]) == 1.0
    assert f_score([1, 1], [0, 0]) == 0.0


def test_roc_auc_matches_pair_counting():
    rng = np.random.default_rng(3)
    y = rng.random(60) < 0.4
    s = np.round(rng.normal(size=60) + y, 1)  # rounded: ties between classes occur
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y] for b in s[~y]]
    assert roc_auc(y, s) == pytest.approx(np.mean(pairs))
    assert roc_auc([True, False], [1.0, 0.0]) == 1.0
    assert np.isnan(roc_auc([True, True], [1.0, 0.0]))


def test_spearman_matches_scipy_and_handles_constants():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.random(30), rng.random(30)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_best_threshold_separates_perfectly_separable_scores():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    t = best_threshold(y, s)
    assert 0.3 < t <= 0.8
    assert f_score(y, s >= t) == 1.0


def test_split_f_score_protocol():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    separable = np.r_[rng.random(50), rng.random(50) + 2]
    r = split_f_score(y, separable, n_splits=20)
    assert r.mean == 1.0 and r.sd == 0.0 and len(r.values) == 20
    noisy = rng.random(100)  # scores unrelated to the labels
    assert split_f_score(y, noisy, n_splits=20).mean < 0.8
    same = split_f_score(y, noisy, n_splits=20, seed=5)
    assert same.values == split_f_score(y, noisy, n_splits=20, seed=5).values
    assert np.isnan(split_f_score([1, 0, 0], [1.0, 0.0, 0.0]).mean)  # needs 2 of each class


def test_calibration_error():
    conf = np.array([0.95] * 100)
    perfect = calibration(conf, np.arange(100) < 95)
    assert perfect.ece == pytest.approx(0.0, abs=1e-12)
    over = calibration(conf, np.arange(100) < 50)
    assert over.ece == pytest.approx(0.45)
    assert over.count[9] == 100 and over.count[:9].sum() == 0
    assert np.isnan(over.accuracy[0])


def test_group_calibration_error_does_not_let_fields_cancel():
    from miq.metrics import calibration, group_calibration_error

    # both fields at confidence 0.7; field a right 9 times in 10, field b 5 in 10
    confidence = np.full(20, 0.7)
    correct = np.r_[np.arange(10) < 9, np.arange(10) < 5]
    groups = np.repeat(["a", "b"], 10)
    assert calibration(confidence, correct).ece == pytest.approx(0.0)  # pooled: 0.7 vs 0.7
    assert group_calibration_error(confidence, correct, groups) == pytest.approx(0.2)
    assert group_calibration_error(confidence[:10], correct[:10], groups[:10]) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="group labels"):
        group_calibration_error([0.5], [True], [0, 1])


def test_calibration_floor_is_what_chance_gives_a_calibrated_model():
    from scipy.stats import binom

    from miq.metrics import calibration, calibration_floor, group_calibration_error

    # certain confidences leave nothing to chance
    certain = calibration_floor(np.r_[np.ones(5), np.zeros(5)], np.arange(10) % 2)
    assert certain.ece == certain.ece_high == certain.group == certain.group_high == 0.0
    # confidence 0.5 on 8 fields of 22 images: E|Bin(22, ½)/22 − ½| by hand, for both errors
    # (one bin holds every image, so the ECE is the pooled |accuracy − 0.5| over 176 images)
    k = np.arange(23)
    expected_field = float(np.sum(binom.pmf(k, 22, 0.5) * np.abs(k / 22 - 0.5)))
    k = np.arange(177)
    expected_pooled = float(np.sum(binom.pmf(k, 176, 0.5) * np.abs(k / 176 - 0.5)))
    floor = calibration_floor(np.full(176, 0.5), np.repeat(np.arange(8), 22), n_draws=4000)
    assert floor.group == pytest.approx(expected_field, abs=0.003)  # ≈ 0.084
    assert floor.ece == pytest.approx(expected_pooled, abs=0.002)  # ≈ 0.030
    assert floor.group_low < floor.group < floor.group_high
    # the same as scoring draws with `calibration` and `group_calibration_error` themselves
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.3, 1.0, 300)
    groups = np.repeat(np.arange(10), 30)
    draws = [rng.random(300) < confidence for _ in range(1000)]
    by_hand = calibration_floor(confidence, groups, n_draws=1000)
    assert np.mean([calibration(confidence, d).ece for d in draws]) == pytest.approx(
        by_hand.ece, rel=0.05
    )
    assert np.mean([group_calibration_error(confidence, d, groups) for d in draws]) == (
        pytest.approx(by_hand.group, rel=0.05)
    )
    # more images per field, a lower floor
    assert calibration_floor(np.full(880, 0.5), np.repeat(np.arange(8), 110)).group < 0.5 * (
        floor.group
    )
    with pytest.raises(ValueError, match="group labels"):
        calibration_floor([0.5, 0.5], [0])


def test_calibration_floor_shares_one_draw_among_noise_draws_of_an_image():
    from miq.metrics import calibration_floor

    # 5 fields × 11 images at confidence 0.8, each image simulated with 4 noise seeds
    confidence = np.full(55, 0.8)
    fields = np.repeat(np.arange(5), 11)
    once = calibration_floor(confidence, fields, n_draws=4000)
    four = np.repeat(confidence, 4), np.repeat(fields, 4)
    image = np.repeat(np.arange(55), 4)
    shared = calibration_floor(*four, draws_of=image, n_draws=4000, seed=1)
    independent = calibration_floor(*four, n_draws=4000, seed=1)
    # four copies that are right or wrong together leave chance what one copy leaves it
    assert shared.group == pytest.approx(once.group, rel=0.06)
    assert shared.group_high == pytest.approx(once.group_high, rel=0.1)
    assert shared.ece == pytest.approx(once.ece, rel=0.06)
    # drawn on their own they look like 4× the images: about half the floor (1/√4)
    assert independent.group == pytest.approx(0.5 * once.group, rel=0.12)
    assert independent.group < 0.6 * shared.group
    # every label distinct: exactly the independent draws (same random stream)
    assert calibration_floor(*four, draws_of=np.arange(220), n_draws=500, seed=1) == (
        calibration_floor(*four, n_draws=500, seed=1)
    )
    # images of one draw keep their own probabilities: a certain image stays right
    mixed = calibration_floor([1.0, 0.5, 1.0, 0.5], [0, 0, 1, 1], draws_of=[0, 0, 1, 1])
    # per field: |1 + (u < 0.5) − 1.5| / 2 = 0.25 whatever u
    assert mixed.group == mixed.group_low == mixed.group_high == pytest.approx(0.25)
    with pytest.raises(ValueError, match="draws_of"):
        calibration_floor([0.5, 0.5], [0, 1], draws_of=[0])


def test_log_loss_and_ranked_probability_score_goldens():
    from miq.metrics import log_loss, ranked_probability_score

    certain = np.eye(11)[[0, 5]]
    assert ranked_probability_score(certain, [0, 5]) == 0.0
    assert ranked_probability_score(certain, [3, 5]) == pytest.approx(1.5)  # 3 levels off, 0
    assert log_loss(certain, [0, 5]) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((1, 11), 1 / 11)
    assert log_loss(uniform, [4]) == pytest.approx(np.log(11))
    # uniform, truth at level 0: Σ_k (1 − (k+1)/11)² for k = 0..10
    expected = sum((1 - (k + 1) / 11) ** 2 for k in range(11))
    assert ranked_probability_score(uniform, [0]) == pytest.approx(expected)


def _fields(n_fields: int, per_field: int, seed: int):
    """Correct/incorrect outcomes whose rate differs from field to field (uniform 0.5–0.9)."""
    rng = np.random.default_rng(seed)
    rate = rng.uniform(0.5, 0.9, n_fields)
    correct = rng.random((n_fields, per_field)) < rate[:, None]
    return correct.ravel(), np.repeat(np.arange(n_fields), per_field)


def test_group_bootstrap_interval_contains_value_and_shrinks_with_fields():
    from miq.metrics import group_bootstrap

    widths = []
    for n_fields in (10, 160):
        correct, groups = _fields(n_fields, 22, seed=n_fields)
        b = group_bootstrap(lambda i, g, c=correct: c[i].mean(), groups, n_resamples=500)
        assert b.n_groups == n_fields and b.n_resamples == 500
        assert b.value[0] == pytest.approx(correct.mean())
        assert b.low[0] < b.value[0] < b.high[0]
        widths.append(b.high[0] - b.low[0])
        # about the normal interval of a mean of field means (sd of the field rates / √n)
        field_means = correct.reshape(n_fields, -1).mean(axis=1)
        expected = 2 * 1.96 * field_means.std() / np.sqrt(n_fields)
        assert widths[-1] == pytest.approx(expected, rel=0.3)
    assert widths[1] < widths[0] / 3  # 16× the fields: about a quarter of the width


def test_group_bootstrap_resamples_whole_fields():
    from miq.metrics import group_bootstrap, group_resamples

    # every field all right or all wrong: a resample of single images would keep its mean near
    # 0.5 for 4 fields of 50 images; resampling fields gives 0, 0.25, ... 1
    correct = np.repeat([1.0, 0.0, 1.0, 0.0], 50)
    groups = np.repeat(["a", "b", "c", "d"], 50)
    draws = group_resamples(groups, 200, seed=1)
    means = {float(correct[i].mean()) for i, _ in draws}
    assert means <= {0.0, 0.25, 0.5, 0.75, 1.0} and len(means) >= 3
    for index, label in draws:  # 200 images; a field drawn twice is two groups of 50
        assert index.size == 200 and np.bincount(label).tolist() == [50] * 4
    b = group_bootstrap(lambda i, g: correct[i].mean(), groups, resamples=draws)
    assert b.low[0] <= 0.25 and b.high[0] >= 0.75
    # identical fields: no spread at all
    same = group_bootstrap(lambda i, g: np.ones(i.size).mean(), groups, n_resamples=50)
    assert same.low[0] == same.high[0] == 1.0
    # one field: the interval is the value
    one = group_bootstrap(lambda i, g: correct[i].mean(), np.zeros(200), n_resamples=20)
    assert one.low[0] == one.value[0] == one.high[0] == 0.5


def test_bootstrap_field_ce_stays_apart_from_ece_when_errors_cancel():
    from miq.metrics import calibration, group_bootstrap, group_calibration_error

    # 40 fields at confidence 0.7: half right 9 in 10, half 5 in 10 -> pooled ECE 0, field CE 0.2
    confidence = np.full(400, 0.7)
    correct = np.concatenate([np.arange(10) < (9 if k % 2 else 5) for k in range(40)])
    groups = np.repeat(np.arange(40), 10)

    def both(i, g):
        return [
            calibration(confidence[i], correct[i]).ece,
            group_calibration_error(confidence[i], correct[i], g),
        ]

    b = group_bootstrap(both, groups, n_resamples=300, seed=2)
    assert b.value[0] == pytest.approx(0.0) and b.value[1] == pytest.approx(0.2)
    assert b.low[1] == pytest.approx(0.2) and b.high[1] == pytest.approx(0.2)  # every field 0.2
    assert b.high[0] < 0.1  # the pooled ECE stays near 0: the two kinds of field cancel
    # a statistic undefined on some resamples (NaN) is left out of them, not propagated
    nan_some = group_bootstrap(
        lambda i, g: np.nan if correct[i].all() else 1.0, groups, n_resamples=20
    )
    assert nan_some.low[0] == nan_some.high[0] == 1.0
