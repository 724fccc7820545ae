"""FCOS geometry: the locations of a feature pyramid and their training targets.

Pure functions of tensors (no model state), used by :class:`~autotimm.models.ObjectDetector`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["assign_fcos_targets", "fcos_locations", "level_size_ranges"]


def fcos_locations(
    shapes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device
) -> list[Tensor]:
    """Pixel centres ``[H*W, 2]`` (x, y) of every location of every pyramid level.

    Example:
        >>> fcos_locations([(1, 2)], [8], torch.device("cpu"))[0].tolist()
        [[4.0, 4.0], [12.0, 4.0]]
    """
    points = []
    for (h, w), stride in zip(shapes, strides):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
    return points


def assign_fcos_targets(
    points: Tensor,
    point_strides: Tensor,
    size_ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    num_classes: int,
    radius: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """FCOS targets for one image with center sampling.

    A location is positive for a box when it lies within ``radius * stride`` of the box centre
    (clipped to the box) and the box's largest distance from it is in the level's size range;
    among several such boxes the smallest wins. All other locations are background.

    Args:
        points: ``[P, 2]`` location centres; point_strides ``[P]``; size_ranges ``[P, 2]``.
        boxes: ``[G, 4]`` xyxy; labels ``[G]`` in ``0..num_classes-1``.

    Returns:
        ``cls_targets [P]`` (``num_classes`` = background), ``box_targets [P, 4]`` (xyxy of the
        assigned box, zeros for background) and ``centerness_targets [P]``.

    Example:
        >>> pts = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
        >>> cls, box, ctr = assign_fcos_targets(pts, torch.tensor([8.0, 8.0]),
        ...     torch.tensor([[0.0, 64.0]] * 2), torch.tensor([[0.0, 0.0, 8.0, 8.0]]),
        ...     torch.tensor([1]), num_classes=2)
        >>> cls.tolist(), ctr.tolist()
        ([1, 2], [1.0, 0.0])
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return (
            torch.full((num_points,), num_classes, dtype=torch.long, device=points.device),
            points.new_zeros(num_points, 4),
            points.new_zeros(num_points),
        )
    x, y = points[:, 0:1], points[:, 1:2]  # [P, 1]
    x1, y1, x2, y2 = boxes.unbind(1)  # [G]
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [P, G, 4]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    reach = point_strides[:, None] * radius  # [P, 1]
    inner = torch.stack(
        [
            x - torch.maximum(cx - reach, x1),
            y - torch.maximum(cy - reach, y1),
            torch.minimum(cx + reach, x2) - x,
            torch.minimum(cy + reach, y2) - y,
        ],
        dim=2,
    )
    in_center = inner.min(dim=2).values > 0
    largest = ltrb.max(dim=2).values
    in_range = (largest >= size_ranges[:, 0:1]) & (largest <= size_ranges[:, 1:2])
    area = ((x2 - x1) * (y2 - y1))[None].expand(num_points, -1)
    area = torch.where(in_center & in_range, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    positive = torch.isfinite(best_area)
    cls_targets = torch.where(positive, labels[best], torch.full_like(best, num_classes))
    box_targets = boxes[best] * positive[:, None]
    d = ltrb[torch.arange(num_points, device=points.device), best].clamp(min=0)
    lr = d[:, [0, 2]]
    tb = d[:, [1, 3]]
    centerness = torch.sqrt(
        (lr.min(1).values / lr.max(1).values.clamp(min=1e-6))
        * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
    )
    return cls_targets, box_targets, centerness * positive


def level_size_ranges(point_strides: Tensor, strides: Sequence[int]) -> Tensor:
    """``[P, 2]`` (low, high) of the largest box side distance each location may regress:
    ``(8 * previous stride, 8 * stride]``, open-ended on the last level.

    Example:
        >>> level_size_ranges(torch.tensor([8.0, 16.0]), [8, 16]).tolist()
        [[0.0, 64.0], [64.0, inf]]
    """
    uppers = torch.tensor(
        [8.0 * s for s in strides[:-1]] + [float("inf")], device=point_strides.device
    )
    lowers = torch.cat([uppers.new_zeros(1), uppers[:-1]])
    level = torch.bucketize(
        point_strides,
        torch.tensor(list(strides), dtype=point_strides.dtype, device=point_strides.device),
    )
    return torch.stack([lowers[level], uppers[level]], dim=1)
