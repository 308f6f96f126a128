"""Losses for imbalanced classes, and the Trainer that uses them.

The Trainer subclass computes the loss from the logits itself, so plain, class-weighted and
focal cross-entropy all go through one path (and the model never sees `labels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

LOSSES = ("ce", "weighted_ce", "focal")


def class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """Inverse-frequency weights, normalised so a balanced dataset gets all ones.

    A class absent from `labels` gets weight 1 (it cannot contribute to the loss anyway).
    """
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_labels)
    counts = counts[:num_labels].float()
    total = counts.sum().clamp(min=1.0)
    weights = torch.where(counts > 0, total / (num_labels * counts.clamp(min=1.0)), 1.0)
    return weights


def classification_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    kind: str = "ce",
    weight: torch.Tensor | None = None,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Mean loss over the batch (weights scale each example; the mean is over examples).

    Args:
        logits: [batch, num_labels].
        targets: [batch] class ids.
        kind: 'ce', 'weighted_ce' (needs `weight`) or 'focal' (uses `weight` as alpha if given).
        weight: per-class weights.
        gamma: focal focusing parameter; 0 makes focal equal to (weighted) CE per sample.

    Raises:
        ValueError: unknown `kind`, or 'weighted_ce' without weights.
    """
    logits = logits.float()  # losses in fp32 even under bf16/fp16 autocast
    if weight is not None:
        weight = weight.to(logits.device)
    if kind == "ce":
        return F.cross_entropy(logits, targets)
    if kind == "weighted_ce":
        if weight is None:
            raise ValueError("weighted_ce needs class weights")
        # A plain mean of weighted per-example losses, not torch's sum(w*l)/sum(w): the mean
        # of equal-sized shards' losses then equals the whole batch's, so DDP (which averages
        # shard gradients) trains exactly like one process at the same global batch.
        per_example = F.cross_entropy(logits, targets, reduction="none")
        return (per_example * weight[targets]).mean()
    if kind == "focal":
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        focal = -((1.0 - log_p.exp()) ** gamma) * log_p
        if weight is not None:
            focal = focal * weight[targets]
        return focal.mean()
    raise ValueError(f"unknown loss '{kind}' (use one of {LOSSES})")


class WeightedLossTrainer(Trainer):
    """HF Trainer whose loss is `classification_loss` (CE, class-weighted CE or focal)."""

    # compute_loss returns a per-batch mean: let the Trainer divide by grad-accum steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        loss_kind: str = "ce",
        loss_weights: torch.Tensor | None = None,
        focal_gamma: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.loss_kind = loss_kind
        self.loss_weights = loss_weights
        self.focal_gamma = focal_gamma

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        inputs = dict(inputs)
        targets = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        loss = classification_loss(
            logits, targets, self.loss_kind, self.loss_weights, self.focal_gamma
        )
        return (loss, outputs) if return_outputs else loss
