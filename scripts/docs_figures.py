"""Generate the figures of ``docs/losses/comparison.md`` from the real autotimm losses.

Every curve is computed by calling the registered loss modules (``autotimm.losses``), never by
re-implementing a formula. The ``compute_*`` functions return the plotted numbers (and need
only torch, so tests can check the claims the page makes about them); ``main`` draws them with
matplotlib's Agg backend into ``docs/images/``.

    pip install matplotlib
    python scripts/docs_figures.py
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
FOCAL_GAMMAS = (0.5, 1.0, 2.0, 5.0)
TVERSKY_BETAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FOCAL_TVERSKY_GAMMAS = (0.5, 0.75, 1.0, 2.0)

sys.path.insert(0, str(ROOT))
from autotimm.losses import (  # noqa: E402  (after the path set-up, for a source checkout)
    CrossEntropyLoss,
    DiceLoss,
    FocalPixelwiseLoss,
    JaccardLoss,
    LovaszLoss,
    TverskyLoss,
)


# --------------------------------------------------------------------------- CE vs focal
@dataclass
class Curve:
    label: str
    x: list[float]
    loss: list[float]
    grad: list[float]


def compute_focal_curves(points: int = 199) -> list[Curve]:
    """Loss and |d loss / d margin| against the predicted probability of the true class.

    Two-class logits ``[z, 0]`` with target class 0, so ``p_t = sigmoid(z)``; the gradient is
    taken with respect to the margin ``z``. Cross entropy is ``CrossEntropyLoss``; focal is
    ``FocalPixelwiseLoss`` (softmax focal loss) at each gamma. For two classes these equal the
    sigmoid ``FocalLoss(alpha=None)`` on logit ``z`` with a positive target.
    """
    p = torch.linspace(0.005, 0.995, points, dtype=torch.float64)
    margin = torch.log(p / (1 - p))
    target = torch.zeros(points, dtype=torch.long)
    losses: list[tuple[str, torch.nn.Module]] = [
        ("cross entropy", CrossEntropyLoss(reduction="none"))
    ]
    losses += [
        (f"focal, gamma={g:g}", FocalPixelwiseLoss(gamma=g, reduction="none")) for g in FOCAL_GAMMAS
    ]
    curves = []
    for label, loss_fn in losses:
        z = margin.clone().requires_grad_(True)
        logits = torch.stack([z, torch.zeros_like(z)], dim=1)
        values = loss_fn(logits, target)
        (grad,) = torch.autograd.grad(values.sum(), z)
        curves.append(Curve(label, p.tolist(), values.detach().tolist(), grad.abs().tolist()))
    return curves


# --------------------------------------------------------------------------- region losses vs IoU
@dataclass
class RegionCurves:
    miou: list[float]
    losses: dict[str, list[float]]


def _shifted_prediction(width: int, size: int, shift: int, confidence: float) -> torch.Tensor:
    """Two-class logits ``[1, 2, 1, width]``: the foreground window starts at ``shift``."""
    fg = torch.zeros(width, dtype=torch.float64)
    fg[shift : shift + size] = 1
    margin = float(torch.logit(torch.tensor(confidence, dtype=torch.float64)))
    z = (2 * fg - 1) * margin  # foreground logit minus background logit
    return torch.stack([torch.zeros_like(z), z]).reshape(1, 2, 1, width)


def region_losses() -> dict[str, torch.nn.Module]:
    """The region losses compared, at their defaults (tversky with a recall-leaning beta)."""
    return {
        "dice": DiceLoss(),
        "jaccard": JaccardLoss(),
        "tversky (alpha=0.3, beta=0.7)": TverskyLoss(alpha=0.3, beta=0.7),
        "lovasz": LovaszLoss(),
    }


def compute_region_curves(
    confidence: float = 0.99, width: int = 400, size: int = 100
) -> RegionCurves:
    """Region losses against the mean IoU of the two classes, on controlled predictions.

    The target is a foreground run of ``size`` pixels in a row of ``width``; the prediction is
    the same run shifted by 0..size pixels, predicted with probability ``confidence`` (and
    ``1 - confidence`` elsewhere). The x value is the mean over background and foreground of
    the IoU of the thresholded prediction.
    """
    target = torch.zeros(1, 1, width, dtype=torch.long)
    target[..., :size] = 1
    miou: list[float] = []
    losses = region_losses()
    values: dict[str, list[float]] = {name: [] for name in losses}
    for shift in range(0, size + 1, 2):
        logits = _shifted_prediction(width, size, shift, confidence)
        predicted = logits.argmax(1)
        ious = []
        for cls in (0, 1):
            inter = ((predicted == cls) & (target == cls)).sum().item()
            union = ((predicted == cls) | (target == cls)).sum().item()
            ious.append(inter / union)
        miou.append(sum(ious) / 2)
        for name, loss_fn in losses.items():
            values[name].append(loss_fn(logits, target).item())
    return RegionCurves(miou, values)


@dataclass
class UnderOverCurves:
    iou: list[float]
    under: dict[str, list[float]]
    over: dict[str, list[float]]


def compute_under_over_curves(confidence: float = 0.99, size: int = 100) -> UnderOverCurves:
    """Foreground losses of under- and over-segmentations with the same foreground IoU.

    The target is a foreground run of ``size`` pixels. Under-segmentation predicts its first
    ``IoU * size`` pixels (only false negatives); over-segmentation predicts ``size / IoU``
    pixels (only false positives). The values are the foreground class's entry of each loss's
    ``reduction="none"`` output.
    """
    width = 4 * size
    target = torch.zeros(1, 1, width, dtype=torch.long)
    target[..., :size] = 1
    losses = {
        "dice": DiceLoss(reduction="none"),
        "jaccard": JaccardLoss(reduction="none"),
        "tversky (alpha=0.3, beta=0.7)": TverskyLoss(alpha=0.3, beta=0.7, reduction="none"),
    }
    ious = [i / 20 for i in range(20, 5, -1)]  # 1.0 .. 0.3
    under: dict[str, list[float]] = {name: [] for name in losses}
    over: dict[str, list[float]] = {name: [] for name in losses}
    for iou in ious:
        for curves, predicted in ((under, round(iou * size)), (over, round(size / iou))):
            logits = _run_prediction(width, predicted, confidence)
            for name, loss_fn in losses.items():
                curves[name].append(loss_fn(logits, target)[0, 1].item())
    return UnderOverCurves(ious, under, over)


def _run_prediction(width: int, size: int, confidence: float) -> torch.Tensor:
    return _shifted_prediction(width, size, 0, confidence)


# --------------------------------------------------------------------------- tversky trade-off
@dataclass
class TverskyTradeoff:
    beta: list[float]
    precision: list[float]
    recall: list[float]


def _imbalanced_pixels(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1-D feature per pixel; 20 % foreground, the classes overlap (feature ~ N(+-1, 1))."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.rand(count, generator=generator) < 0.2).long()
    feature = (2 * labels - 1).float() + torch.randn(count, generator=generator)
    return feature, labels


def compute_tversky_tradeoff(
    betas: tuple[float, ...] = TVERSKY_BETAS, steps: int = 150, seed: int = 0
) -> TverskyTradeoff:
    """Precision and recall of the foreground after fitting a logistic model with Tversky.

    For each ``beta`` (``alpha = 1 - beta``; autotimm's ``alpha`` weights false positives,
    ``beta`` false negatives) a two-parameter model ``logit = w * feature + b`` is fitted to
    ambiguous pixels with ``TverskyLoss`` (Adam, full batch); precision and recall are those
    of its argmax prediction on fresh pixels.
    """
    feature, labels = _imbalanced_pixels(8000, seed)
    test_feature, test_labels = _imbalanced_pixels(8000, seed + 1)
    precision, recall = [], []
    for beta in betas:
        torch.manual_seed(seed)
        w = torch.ones((), requires_grad=True)
        b = torch.zeros((), requires_grad=True)
        loss_fn = TverskyLoss(alpha=1 - beta, beta=beta, smooth=0.0)
        optimizer = torch.optim.Adam([w, b], lr=0.1)
        for _ in range(steps):
            z = w * feature + b
            logits = torch.stack([torch.zeros_like(z), z]).reshape(1, 2, 1, -1)
            loss = loss_fn(logits, labels.reshape(1, 1, -1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            predicted = (w * test_feature + b) > 0
        tp = (predicted & (test_labels == 1)).sum().item()
        precision.append(tp / max(int(predicted.sum().item()), 1))
        recall.append(tp / int((test_labels == 1).sum().item()))
    return TverskyTradeoff(list(betas), precision, recall)


# --------------------------------------------------------------------------- segmentation modes
@dataclass
class ModeCurves:
    iou: list[float]
    losses: dict[str, list[float]]


def _shifted_mask_logits(width: int, size: int, shift: int, confidence: float) -> torch.Tensor:
    """One sigmoid channel ``[1, 1, 1, width]``: the foreground run starts at ``shift``."""
    return _shifted_prediction(width, size, shift, confidence)[:, 1:]


def mode_losses() -> dict[str, tuple[torch.nn.Module, str]]:
    """The losses compared on one binary mask, and the mode (``logits``) each is given."""
    return {
        'dice (mode="binary")': (DiceLoss(mode="binary"), "binary"),
        "dice (two classes, background included)": (DiceLoss(), "multiclass"),
        "dice (two classes, include_background=False)": (
            DiceLoss(include_background=False),
            "multiclass",
        ),
        'jaccard (mode="binary")': (JaccardLoss(mode="binary"), "binary"),
    }


def compute_mode_curves(confidence: float = 0.9, width: int = 400, size: int = 40) -> ModeCurves:
    """Losses of one small foreground (``size`` of ``width`` pixels) in binary mode and as two
    softmax classes, against the foreground IoU of the thresholded prediction.

    The prediction is the foreground run shifted by 0..size pixels, with probability
    ``confidence``. Binary mode gets the one foreground logit ``z``; the two-class losses get
    ``[0, z]``, whose softmax is ``[sigmoid(-z), sigmoid(z)]``: the same probabilities.
    """
    target = torch.zeros(1, 1, width, dtype=torch.long)
    target[..., :size] = 1
    losses = mode_losses()
    values: dict[str, list[float]] = {name: [] for name in losses}
    ious = []
    for shift in range(0, size + 1, 2):
        overlap = size - shift
        ious.append(overlap / (size + shift))
        two_classes = _shifted_prediction(width, size, shift, confidence)
        for name, (loss_fn, mode) in losses.items():
            logits = two_classes[:, 1:] if mode == "binary" else two_classes
            values[name].append(loss_fn(logits, target).item())
    return ModeCurves(ious, values)


def compute_focal_tversky_curves(
    gammas: tuple[float, ...] = FOCAL_TVERSKY_GAMMAS,
    confidence: float = 0.9,
    width: int = 400,
    size: int = 40,
) -> ModeCurves:
    """``TverskyLoss(mode="binary", alpha=0.3, beta=0.7, gamma=g)`` on the shifted predictions
    of :func:`compute_mode_curves`, against the foreground IoU."""
    target = torch.zeros(1, 1, width, dtype=torch.long)
    target[..., :size] = 1
    losses = {
        f"gamma={g:g}": TverskyLoss(mode="binary", alpha=0.3, beta=0.7, gamma=g) for g in gammas
    }
    values: dict[str, list[float]] = {name: [] for name in losses}
    ious = []
    for shift in range(0, size + 1, 2):
        ious.append((size - shift) / (size + shift))
        logits = _shifted_mask_logits(width, size, shift, confidence)
        for name, loss_fn in losses.items():
            values[name].append(loss_fn(logits, target).item())
    return ModeCurves(ious, values)


# --------------------------------------------------------------------------- drawing
def draw(output: Path = IMAGES) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 110, "font.size": 10, "axes.grid": True})
    output.mkdir(parents=True, exist_ok=True)
    written = []

    curves = compute_focal_curves()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for curve in curves:
        style = {"color": "black", "linewidth": 2} if curve.label == "cross entropy" else {}
        left.plot(curve.x, curve.loss, label=curve.label, **style)
        right.plot(curve.x, curve.grad, label=curve.label, **style)
    left.set(
        xlabel="predicted probability of the true class $p_t$",
        ylabel="loss",
        title="Loss",
        ylim=(0, 5),
    )
    right.set(
        xlabel="predicted probability of the true class $p_t$",
        ylabel=r"$|\partial \ell / \partial z|$ (z: logit margin)",
        title="Gradient magnitude",
    )
    left.legend()
    fig.suptitle("Cross entropy and focal loss (autotimm CrossEntropyLoss, FocalPixelwiseLoss)")
    fig.tight_layout()
    written.append(output / "focal_vs_ce.png")
    fig.savefig(written[-1])
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for axis, confidence in zip(axes[:2], (0.99, 0.7), strict=True):
        region = compute_region_curves(confidence=confidence)
        for name, values in region.losses.items():
            axis.plot(region.miou, values, label=name, marker=".", markersize=3)
        axis.plot([0, 1], [1, 0], color="grey", linestyle=":", label="1 - mIoU")
        axis.set(
            xlabel="mean IoU of the thresholded prediction",
            ylabel="loss (mean)",
            title=f"shifted foreground, confidence {confidence:g}",
            xlim=(0.3, 1.0),
            ylim=(0, 0.75),
        )
    axes[0].legend()
    under_over = compute_under_over_curves()
    for index, name in enumerate(under_over.under):
        color = f"C{index}"
        axes[2].plot(
            under_over.iou, under_over.under[name], color=color, marker=".", label=f"{name}, under"
        )
        axes[2].plot(
            under_over.iou,
            under_over.over[name],
            color=color,
            linestyle="--",
            label=f"{name}, over",
        )
    axes[2].set(
        xlabel="foreground IoU",
        ylabel="foreground loss",
        title="under- (FN) vs over-segmentation (FP), confidence 0.99",
        xlim=(0.3, 1.0),
    )
    axes[2].legend(fontsize=8)
    fig.suptitle("Region losses against IoU (two classes, controlled predictions)")
    fig.tight_layout()
    written.append(output / "region_losses_vs_iou.png")
    fig.savefig(written[-1])
    plt.close(fig)

    tradeoff = compute_tversky_tradeoff()
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.plot(tradeoff.beta, tradeoff.precision, marker="o", label="precision")
    axis.plot(tradeoff.beta, tradeoff.recall, marker="s", label="recall")
    axis.axvline(0.5, color="grey", linestyle=":", label="alpha = beta = 0.5 (dice)")
    axis.set(
        xlabel="beta (weight of false negatives); alpha = 1 - beta",
        ylabel="foreground precision / recall",
        ylim=(0, 1.02),
        title="TverskyLoss: beta trades precision for recall",
    )
    axis.legend(loc="lower left")
    fig.tight_layout()
    written.append(output / "tversky_tradeoff.png")
    fig.savefig(written[-1])
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    modes = compute_mode_curves()
    styles = {
        "binary": {"linewidth": 2},
        "background included": {"linestyle": "--"},
        "include_background=False": {"linestyle": ":", "linewidth": 3},
    }
    for name, values in modes.losses.items():
        style = next((v for k, v in styles.items() if k in name), {})
        left.plot(modes.iou, values, label=name, **style)
    left.set(
        xlabel="foreground IoU of the thresholded prediction",
        ylabel="loss",
        title="one small foreground, confidence 0.9",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    left.legend(fontsize=8)
    focal = compute_focal_tversky_curves()
    for name, values in focal.losses.items():
        right.plot(focal.iou, values, label=name, linewidth=2 if name == "gamma=1" else 1)
    right.set(
        xlabel="foreground IoU of the thresholded prediction",
        ylabel="loss",
        title='focal Tversky: TverskyLoss(mode="binary", alpha=0.3, beta=0.7)',
        xlim=(0, 1),
        ylim=(0, 1),
    )
    right.legend()
    fig.suptitle("Segmentation modes: one sigmoid channel against two softmax classes")
    fig.tight_layout()
    written.append(output / "segmentation_modes.png")
    fig.savefig(written[-1])
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--output", type=Path, default=IMAGES, help="folder for the PNGs")
    args = parser.parse_args(argv)
    for path in draw(args.output):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
