"""A custom loss for ``configs/custom_loss.yaml``: registered on import, named in the config.

``imports: [my_losses]`` in the config imports this module (it is found next to the config
file, or in the current directory) before the config is checked, so ``my_focal_tversky`` is a
known loss name, its parameters are checked and ``autotimm schema --imports my_losses``
offers it to editors.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from autotimm.losses import register_loss


@register_loss(task="segmentation")
class MyFocalTverskyLoss(nn.Module):
    """Focal Tversky loss (Abraham & Khan, 2019) on softmax probabilities.

    Args:
        num_classes: Number of classes; the segmentor supplies it from its own argument.
        alpha: Weight of false negatives.
        beta: Weight of false positives.
        gamma: Focal exponent applied to ``1 - Tversky index``.
        ignore_index: Target label of pixels that are left out; supplied by the segmentor.
    """

    def __init__(
        self,
        num_classes: Annotated[int, Field(ge=1)],
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.7,
        beta: Annotated[float, Field(ge=0, le=1)] = 0.3,
        gamma: Annotated[float, Field(gt=0)] = 0.75,
        ignore_index: int = 255,
    ) -> None:
        super().__init__()
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.alpha, self.beta, self.gamma = alpha, beta, gamma

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target != self.ignore_index).unsqueeze(1).to(logits.dtype)
        probs = logits.float().softmax(1) * valid
        one_hot = F.one_hot(target.clamp(0, self.num_classes - 1).long(), self.num_classes)
        truth = one_hot.movedim(-1, 1).to(probs.dtype) * valid
        dims = (0, 2, 3)
        true_pos = (probs * truth).sum(dims)
        false_neg = ((1 - probs) * truth).sum(dims)
        false_pos = (probs * (1 - truth)).sum(dims)
        tversky = (true_pos + 1.0) / (
            true_pos + self.alpha * false_neg + self.beta * false_pos + 1.0
        )
        return (1 - tversky).clamp(min=1e-6).pow(self.gamma).mean()  # finite gradient at 0
