"""Ranked probability score (RPS) loss for ordered defocus levels."""

from __future__ import annotations

import math

import torch

__all__ = [
    "ranked_probability_score",
    "soft_ranked_probability_score",
    "image_distributions",
    "image_log_loss",
    "image_ranked_probability_score",
    "image_distillation_loss",
]


def ranked_probability_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean RPS over the batch: Σₖ (CDF_pred(k) − CDF_true(k))², as in Yang et al. 2018.

    logits : (B, K) unnormalised scores; labels : (B,) int64 level indices.
    A one-hot prediction d levels away from the truth costs d; the range is [0, K − 1].
    """
    target = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return soft_ranked_probability_score(logits, target)


def soft_ranked_probability_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean RPS against a target distribution (B, K), e.g. a teacher network's probabilities
    (distillation); with one-hot targets it is `ranked_probability_score`."""
    return _rps_of_probabilities(torch.softmax(logits, dim=1), target)


def _rps_of_probabilities(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    diff = torch.cumsum(probs, dim=1) - torch.cumsum(target, dim=1)
    return (diff * diff).sum(dim=1).mean()


def image_distributions(
    logits: torch.Tensor, group_size: int, temperature: float = 1.0
) -> torch.Tensor:
    """Whole-image level distributions (G, K), each aggregated from ``group_size`` consecutive
    patches of ``logits`` (B, K) as `miq.assessment.aggregate` does at inference: the
    patches' probabilities weighted by their certainty 1 − H(p)/ln K (differentiable through the
    weights too), then p ← p^(1/``temperature``) renormalised (an image temperature; < 1
    sharpens)."""
    k = logits.shape[1]
    probs = torch.softmax(logits, dim=1).reshape(-1, group_size, k)  # (G, M, K)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=2)
    certainty = (1 - entropy / math.log(k)).clamp_min(0) + 1e-6  # (G, M); never all zero
    image = (certainty[..., None] * probs).sum(dim=1) / certainty.sum(dim=1, keepdim=True)
    if temperature != 1.0:
        image = torch.softmax(torch.log(image.clamp_min(1e-12)) / temperature, dim=1)
    return image


def image_log_loss(
    logits: torch.Tensor, labels: torch.Tensor, group_size: int, temperature: float = 1.0
) -> torch.Tensor:
    """Mean negative log-likelihood of the true level under `image_distributions`
    (the quantity a fitted image temperature minimises). labels : (B,), one level per group."""
    image = image_distributions(logits, group_size, temperature)
    truth = labels[::group_size]
    rows = torch.arange(len(truth), device=truth.device)
    return -torch.log(image[rows, truth].clamp_min(1e-12)).mean()


def image_ranked_probability_score(
    logits: torch.Tensor, labels: torch.Tensor, group_size: int, temperature: float = 1.0
) -> torch.Tensor:
    """Mean RPS of the whole-image distributions of `image_distributions`.

    logits : (B, K), B a multiple of ``group_size``; labels : (B,) int64, one level per group.
    """
    image = image_distributions(logits, group_size, temperature)
    target = torch.nn.functional.one_hot(labels[::group_size], logits.shape[1]).to(logits.dtype)
    return _rps_of_probabilities(image, target)


def image_distillation_loss(
    logits: torch.Tensor, teacher_image: torch.Tensor, group_size: int, temperature: float = 1.0
) -> torch.Tensor:
    """Mean cross-entropy −Σₖ q_teacher(k) · log q(k) of the whole-image distributions q of
    `image_distributions` against a teacher's whole-image distributions (G, K), e.g. a
    calibrated model's (its KL divergence up to a constant). With one-hot teacher distributions
    it is `image_log_loss`."""
    image = image_distributions(logits, group_size, temperature)
    return -(teacher_image * torch.log(image.clamp_min(1e-12))).sum(dim=1).mean()
