"""Ranked probability score (RPS) loss for ordered defocus levels."""

from __future__ import annotations

import torch

__all__ = ["ranked_probability_score", "soft_ranked_probability_score"]


def ranked_probability_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean RPS over the batch: Σₖ (CDF_pred(k) − CDF_true(k))², as in Yang et al. 2018.

    logits : (B, K) unnormalised scores; labels : (B,) int64 level indices.
    A one-hot prediction d levels away from the truth costs d; the range is [0, K − 1].
    """
    target = torch.nn.functional.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return soft_ranked_probability_score(logits, target)


def soft_ranked_probability_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean RPS against a target distribution (B, K), e.g. a teacher network's probabilities
    (distillation); with one-hot targets it is :func:`ranked_probability_score`."""
    probs = torch.softmax(logits, dim=1)
    diff = torch.cumsum(probs, dim=1) - torch.cumsum(target, dim=1)
    return (diff * diff).sum(dim=1).mean()
