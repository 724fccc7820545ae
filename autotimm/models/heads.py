"""Task heads: DeepLabV3+ (ASPP + low-level skip), FCOS, and an RoI mask head.

All heads use GroupNorm, so they train with any batch size (even 1) and any feature-map size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ASPP", "DeepLabV3PlusHead", "FCOSHead", "MaskHead", "conv_norm_act"]


def _groups(channels: int) -> int:
    """Up to 32 GroupNorm groups of at least 4 channels (so 1x1 maps, e.g. P7, normalise)."""
    for groups in (32, 16, 8, 4, 2):
        if channels % groups == 0 and channels // groups >= 4:
            return groups
    return 1


def conv_norm_act(
    in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1
) -> nn.Sequential:
    """``Conv2d -> GroupNorm -> ReLU`` with "same" padding.

    Example:
        >>> conv_norm_act(8, 16)(torch.zeros(1, 8, 5, 5)).shape
        torch.Size([1, 16, 5, 5])
    """
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False
        ),
        nn.GroupNorm(_groups(out_channels), out_channels),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and an image-pooling branch.

    Example:
        >>> ASPP(64, 32)(torch.zeros(2, 64, 4, 4)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(
        self, in_channels: int, out_channels: int, rates: Sequence[int] = (6, 12, 18)
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [conv_norm_act(in_channels, out_channels, 1)]
            + [conv_norm_act(in_channels, out_channels, 3, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            conv_norm_act(out_channels * (len(rates) + 2), out_channels, 1), nn.Dropout(0.1)
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusHead(nn.Module):
    """DeepLabV3+ decoder: ASPP on the deepest feature, fused with a projected low-level skip.

    Returns logits at the low-level feature's resolution; the model upsamples to the input.

    Example:
        >>> head = DeepLabV3PlusHead(low_channels=16, high_channels=64, num_classes=3, channels=32)
        >>> head(torch.zeros(1, 16, 16, 16), torch.zeros(1, 64, 2, 2)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(
        self,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        channels: int = 256,
        low_projection: int = 48,
        rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        self.aspp = ASPP(high_channels, channels, rates)
        self.low = conv_norm_act(low_channels, low_projection, 1)
        self.fuse = nn.Sequential(
            conv_norm_act(channels + low_projection, channels, 3),
            conv_norm_act(channels, channels, 3),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = self.aspp(high)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(torch.cat([context, self.low(low)], dim=1)))


class FCOSHead(nn.Module):
    """The FCOS head shared by all pyramid levels: class logits, box distances, centerness.

    Box distances ``(l, t, r, b)`` are returned in units of each level's stride (ReLU of a
    per-level learnable scale), centerness is predicted from the regression tower.

    Example:
        >>> head = FCOSHead(32, num_classes=4, num_convs=1, num_levels=2)
        >>> cls, reg, ctr = head([torch.zeros(1, 32, 8, 8), torch.zeros(1, 32, 4, 4)])
        >>> cls[0].shape, reg[1].shape, ctr[1].shape
        (torch.Size([1, 4, 8, 8]), torch.Size([1, 4, 4, 4]), torch.Size([1, 1, 4, 4]))
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        num_convs: int = 4,
        num_levels: int = 5,
        prior_prob: float = 0.01,
    ) -> None:
        super().__init__()
        self.cls_tower = nn.Sequential(
            *[conv_norm_act(channels, channels) for _ in range(num_convs)]
        )
        self.reg_tower = nn.Sequential(
            *[conv_norm_act(channels, channels) for _ in range(num_convs)]
        )
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        assert self.cls_logits.bias is not None
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(
        self, features: Sequence[Tensor]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        cls_out, reg_out, ctr_out = [], [], []
        for level, feature in enumerate(features):
            cls_feature = self.cls_tower(feature)
            reg_feature = self.reg_tower(feature)
            cls_out.append(self.cls_logits(cls_feature))
            reg_out.append(F.relu(self.bbox_pred(reg_feature) * self.scales[level]))
            ctr_out.append(self.centerness(reg_feature))
        return cls_out, reg_out, ctr_out


class MaskHead(nn.Module):
    """Mask R-CNN style mask head on RoI features: convs, 2x transposed conv, per-class logits.

    Example:
        >>> MaskHead(32, num_classes=3, channels=16, num_convs=2)(torch.zeros(5, 32, 14, 14)).shape
        torch.Size([5, 3, 28, 28])
    """

    def __init__(
        self, in_channels: int, num_classes: int, channels: int = 256, num_convs: int = 4
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(conv_norm_act(in_channels if i == 0 else channels, channels))
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(channels if num_convs else in_channels, channels, 2, stride=2),
            nn.ReLU(inplace=True),
        )
        self.logits = nn.Conv2d(channels, num_classes, 1)

    def forward(self, roi_features: Tensor) -> Tensor:
        return self.logits(self.upsample(self.convs(roi_features)))
