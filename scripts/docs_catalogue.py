"""Generate ``docs/losses/catalogue.md``, the built-in loss catalogue, from the live registry.

Everything on the page except the formulas and the peer statements comes from the registry:
names, tasks, aliases, ``expects`` / ``target``, the class docstring and the parameter table
(``entry.parameters``: types, defaults, bounds and descriptions). The formulas are written
here, one per loss name; a built-in loss without one is an error, so a new loss cannot land
undocumented. So are the peer statements (:data:`PEERS`, :data:`DIFFERENCES`,
:data:`GENERAL_DIFFERENCES`): which other library's loss each one equals, under which
convention, and where it differs on purpose; ``tests/losses/test_losses_peers.py`` names the
test that checks each statement and fails when one has none.

    python scripts/docs_catalogue.py          # rewrite the page
    python scripts/docs_catalogue.py --check  # exit 1 if the page is out of date (tests do this)
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from autotimm.losses import LossEntry, ParameterInfo

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "losses" / "catalogue.md"

# LaTeX (pymdownx.arithmatex), one display formula per built-in loss name. Notation: x logits,
# p = softmax(x) over classes (sigmoid for binary losses), y / g targets, c classes, s smooth.
FORMULAS: dict[str, str] = {
    "cross_entropy": r"""
\ell_n = -\sum_{c} w_c\, q_{n,c} \log \frac{e^{x_{n,c}}}{\sum_{k} e^{x_{n,k}}},
\qquad q_{n} = (1-\varepsilon)\,\mathrm{onehot}(y_n) + \frac{\varepsilon}{C}
""",
    "nll": r"""
\ell_n = -\,w_{y_n}\, x_{n, y_n} \quad (x = \text{log-probabilities})
""",
    "bce_with_logits": r"""
\ell = -\,w \left[ p_w\, y \log \sigma(x) + (1 - y) \log\bigl(1 - \sigma(x)\bigr) \right],
\qquad y_{n,c} = (1 - s)\,[c = t_n] + \frac{s}{C} \ \text{for class indices } t
""",
    "asymmetric": r"""
\ell = -\bigl[ y \log \max(p, \epsilon) + (1 - y) \log \max(m, \epsilon) \bigr]
  (1 - p_t)^{\gamma_{+} y + \gamma_{-} (1 - y)},
\quad p = \sigma(x),\ m = \min(1 - p + \mathrm{clip}, 1),\ p_t = y\, p + (1 - y)\, m
""",
    "softmax_focal": r"""
\ell_n = -\,w_{y_n}\, (1 - p_{n, y_n})^{\gamma} \log p_{n, y_n},
\quad p_n = \mathrm{softmax}(x_n)
""",
    "poly1": r"""
\ell_n = \sum_{c} w_c\, q_{n,c} \bigl( -\log p_{n,c} + \epsilon\, (1 - p_{n,c}) \bigr),
\quad q_{n} = (1-s)\,\mathrm{onehot}(y_n) + \frac{s}{C}
  \ \bigl(= \mathrm{CE} + \epsilon\,(1 - p_t) \text{ for } w = 1,\ s = 0\bigr)
""",
    "l1": r"""
\ell = |\hat b - b| \quad \text{per box coordinate}
""",
    "smooth_l1": r"""
\ell = \begin{cases} \tfrac{1}{2} d^2 / \beta & |d| < \beta \\
  |d| - \tfrac{1}{2} \beta & \text{otherwise} \end{cases},
\quad d = \hat b - b \text{ per box coordinate}
""",
    "iou": r"""
\ell = 1 - \mathrm{IoU} \ \text{(linear)} \quad \text{or} \quad
\ell = -\log \max(\mathrm{IoU}, \epsilon) \ \text{(log)},
\qquad \mathrm{IoU} = \frac{|A \cap B|}{|A \cup B| + \epsilon}
""",
    "quality_focal": r"""
\ell = -\,|y - \sigma(x)|^{\beta}
  \left[ y \log \sigma(x) + (1 - y) \log\bigl(1 - \sigma(x)\bigr) \right],
\quad y \in [0, 1] \text{ the IoU quality target}
""",
    "varifocal": r"""
\ell = \begin{cases}
  -\,y \left[ y \log \sigma(x) + (1 - y) \log\bigl(1 - \sigma(x)\bigr) \right] & y > 0 \\
  -\,\alpha\, \sigma(x)^{\gamma} \log\bigl(1 - \sigma(x)\bigr) & y = 0
\end{cases}
""",
    "distribution_focal": r"""
\ell = -\bigl[ (b + 1 - y) \log p_{b} + (y - b) \log p_{b + 1} \bigr],
\quad b = \min(\lfloor y \rfloor, n - 1),\ p = \mathrm{softmax}(x) \text{ over the bins } 0..n
""",
    "bce": r"""
\ell = -\,w \left[ y \log p + (1 - y) \log (1 - p) \right],
\quad \log \text{ clamped at } -100
""",
    "mse": r"""
\ell = (p - y)^2
""",
    "focal": r"""
\ell = -\,\alpha_t\, (1 - p_t)^{\gamma} \log p_t,
\qquad p_t = \begin{cases} \sigma(x) & y = 1 \\ 1 - \sigma(x) & y = 0 \end{cases},
\quad \alpha_t = \begin{cases} \alpha & y = 1 \\ 1 - \alpha & y = 0 \end{cases}
""",
    "giou": r"""
\ell = 1 - \mathrm{IoU}(A, B) + \frac{|C| - |A \cup B|}{|C|},
\quad C = \text{smallest box enclosing } A \text{ and } B
""",
    "diou": r"""
\ell = 1 - \mathrm{IoU}(A, B) + \frac{\rho^2(a, b)}{c^2},
\quad \rho = \text{distance of the centres},\ c = \text{diagonal of the enclosing box}
""",
    "ciou": r"""
\ell = 1 - \mathrm{IoU} + \frac{\rho^2(a, b)}{c^2} + \beta v,
\quad v = \frac{4}{\pi^2}\left(\arctan\frac{w_B}{h_B} - \arctan\frac{w_A}{h_A}\right)^2,
\quad \beta = \frac{v}{1 - \mathrm{IoU} + v} \ (\text{no gradient})
""",
    "centerness": r"""
\ell = -\left[ t \log \sigma(x) + (1 - t) \log\bigl(1 - \sigma(x)\bigr) \right],
\quad t \in [0, 1] \text{ the centerness target}
""",
    "fcos": r"""
L = \frac{1}{n}\Bigl( \lambda_{cls} \sum_{\text{valid}} \ell_{cls}
  + \lambda_{reg} \sum_{\text{fg}} \ell_{reg}
  + \lambda_{ctr} \sum_{\text{fg}} \mathrm{BCE}(x_{ctr}, t_{ctr}) \Bigr),
\quad n = \max(1, \#\text{fg})
""",
    "dice": r"""
\ell_{b,c} = w_c \left(1 - \frac{2 \sum_i p_{b,c,i}\, g_{b,c,i} + s}
  {\sum_i p_{b,c,i} + \sum_i g_{b,c,i} + s}\right),
\quad p = \begin{cases} \mathrm{softmax}_c(x) & \text{multiclass} \\
  \sigma(x) & \text{binary, multilabel} \end{cases}
""",
    "tversky": r"""
\ell_{b,c} = w_c \left(1 - \frac{TP + s}{TP + \alpha\, FP + \beta\, FN + s}\right)^{\gamma},
\quad TP = \sum_i p\, g,\ FP = \sum_i p\,(1 - g),\ FN = \sum_i (1 - p)\, g
""",
    "jaccard": r"""
\ell_{b,c} = w_c \left(1 - \frac{\sum_i p\, g + s}{\sum_i p + \sum_i g - \sum_i p\, g + s}\right)
""",
    "lovasz": r"""
\ell = \frac{1}{|\mathcal{C}|} \sum_{c \in \mathcal{C}}
  \sum_{i} m_{\pi_i}(c)\, \bigl[\Delta J_c(\pi_1..\pi_i) - \Delta J_c(\pi_1..\pi_{i-1})\bigr],
\quad m_i(c) = \begin{cases} |g_i(c) - p_i(c)|,\ \mathcal{C} \text{ present classes}
  & \text{multiclass} \\
  \max\bigl(0, 1 - x_i(c)\,(2 g_i(c) - 1)\bigr),\ \mathcal{C} \text{ all channels}
  & \text{binary, multilabel} \end{cases}
""",
    "focal_pixelwise": r"""
\ell_i = -\,w_{c}\, (1 - p_{t})^{\gamma} \log p_{t},
\quad p_t = \begin{cases} \mathrm{softmax}(x_i)_{y_i} & \text{multiclass} \\
  \sigma(x_{i,c}) \text{ if } g_{i,c} = 1,\ 1 - \sigma(x_{i,c}) \text{ if } g_{i,c} = 0
  & \text{binary, multilabel} \end{cases}
""",
    "ohem_cross_entropy": r"""
L = \frac{\sum_{i \in K} w_{y_i} \mathrm{CE}_i}{\sum_{i \in K} w_{y_i}},
\quad K = \{ i : p_{i, y_i} < \tau \} \cup \{ i : \mathrm{CE}_i \geq \mathrm{CE}_{(m B)} \},
\quad \mathrm{CE}_{(k)} = k\text{-th largest over the labelled pixels}
""",
    "mask": r"""
\ell = -\left[ p_w\, g \log \sigma(x) + (1 - g) \log\bigl(1 - \sigma(x)\bigr) \right]
\quad \text{per mask pixel}
""",
    "combined_segmentation": r"""
L = \lambda_{ce}\, \mathrm{CE}(x, y) + \lambda_{dice}\, \mathrm{Dice}(x, y)
""",
    "weighted_sum": r"""
L = \sum_{i} w_i\, \ell_i\bigl(a_i(x), b_i(y)\bigr),
\quad a_i, b_i = \text{what term } i \text{ takes (in a model; else } x, y\text{)}, \; w_i \ge 0
""",
}


class Peer(NamedTuple):
    """The catalogue's statement that a loss equals another library's loss."""

    peer: str
    """The other library's loss, as imported (``torchvision.ops.sigmoid_focal_loss``)."""
    convention: str
    """The arguments under which the two agree, and what is compared (Markdown)."""


class Difference(NamedTuple):
    """A deliberate departure from a peer's convention; ``key`` names it in the tests."""

    key: str
    text: str


GENERAL_DIFFERENCES: tuple[Difference, ...] = (
    Difference(
        "float32-output",
        "float16 and bfloat16 inputs are computed and returned in float32, where torch, "
        "torchvision and MONAI compute and return the input's dtype.",
    ),
    Difference(
        "nothing-to-learn",
        "a mean over nothing (empty inputs, every target ignored) is 0 with a zero gradient, "
        "where torch returns NaN.",
    ),
    Difference(
        "bad-reduction",
        "an unknown `reduction` is a `LossConfigError` (a `ValueError`) when the loss is built "
        "through the registry (`get_loss`, `LossSpec`, a model's loss arguments), and a "
        "`ValueError` at the call for a module built directly; torchvision raises its "
        "`ValueError` at the call.",
    ),
)
"""Where every built-in loss differs from its peers; shown once, above the catalogue."""

_VALUES_AND_GRADIENTS = "values and gradients"
PEERS: dict[str, tuple[Peer, ...]] = {
    "cross_entropy": (
        Peer(
            "torch.nn.CrossEntropyLoss",
            "the same `weight`, `ignore_index`, `label_smoothing` and `reduction`, for "
            f"class-index and class-probability targets; {_VALUES_AND_GRADIENTS}",
        ),
    ),
    "nll": (
        Peer(
            "torch.nn.NLLLoss",
            f"the same `weight`, `ignore_index` and `reduction`; {_VALUES_AND_GRADIENTS}",
        ),
    ),
    "bce_with_logits": (
        Peer(
            "torch.nn.BCEWithLogitsLoss",
            f"the same `weight`, `pos_weight` and `reduction`; {_VALUES_AND_GRADIENTS}",
        ),
        Peer(
            "timm.loss.BinaryCrossEntropy",
            "`smoothing=label_smoothing` and the same `target_threshold`, `smooth_dense`, "
            "`weight`, `pos_weight` and `reduction`, for class-index and dense targets; "
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "asymmetric": (
        Peer(
            "timm.loss.AsymmetricLossMultiLabel",
            "the same `gamma_neg`, `gamma_pos`, `clip`, `eps` and `weight`, "
            "`smoothing=label_smoothing`, `reduction` `\"mean\"`, `\"sum\"` or `\"none\"`, "
            "multi-hot and soft targets, computed in float64; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "softmax_focal": (
        Peer(
            "torch.nn.functional.cross_entropy",
            "`gamma=0`, `alpha=None`, the same `ignore_index`; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "poly1": (
        Peer(
            "torch.nn.CrossEntropyLoss",
            "`epsilon=0` and the same `weight`, `ignore_index`, `label_smoothing` and "
            "`reduction`, for class-index and class-probability targets; "
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "l1": (
        Peer(
            "torch.nn.functional.l1_loss",
            "the same `reduction`, without box weights; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "smooth_l1": (
        Peer(
            "torch.nn.functional.smooth_l1_loss",
            "the same `beta` and `reduction`, without box weights; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "iou": (
        Peer(
            "torchvision.ops.box_iou",
            "`1 - box_iou(pred, target).diagonal()` (`mode=\"linear\"`) and its `-log` "
            "(`mode=\"log\"`) for overlapping boxes and a negligible `eps`; values, and "
            "gradients with respect to the predicted and the target boxes",
        ),
    ),
    "quality_focal": (
        Peer(
            "mmdet.models.losses.quality_focal_loss_tensor_target",
            "the same `beta`, element-wise (mmdet sums over the classes before reducing); "
            "values and gradients, against mmdet's formula transcribed in the test (mmdet is "
            "not a dependency)",
        ),
    ),
    "varifocal": (
        Peer(
            "mmdet.models.losses.varifocal_loss",
            "the same `alpha`, `gamma`, `iou_weighted` and `reduction`; values and gradients, "
            "against mmdet's formula transcribed in the test (mmdet is not a dependency)",
        ),
    ),
    "distribution_focal": (
        Peer(
            "mmdet.models.losses.distribution_focal_loss",
            "logits `[N * 4, reg_max + 1]` and distances `[N * 4]` below `reg_max`, per side; "
            "values and gradients, against mmdet's formula transcribed in the test (mmdet is "
            "not a dependency)",
        ),
    ),
    "bce": (
        Peer(
            "torch.nn.BCELoss",
            "the same `weight` and `reduction`, log clamped at -100 as in torch; "
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "mse": (Peer("torch.nn.MSELoss", f"the same `reduction`; {_VALUES_AND_GRADIENTS}"),),
    "focal": (
        Peer(
            "torchvision.ops.sigmoid_focal_loss",
            "float targets of the logits' shape, the same `alpha`, `gamma` and `reduction` "
            "(`alpha=None` here for torchvision's `alpha=-1`); values, and gradients with "
            "respect to the logits and to soft targets",
        ),
    ),
    "giou": (
        Peer(
            "torchvision.ops.generalized_box_iou_loss",
            "the same `reduction` and `eps`; values, and gradients with respect to the "
            "predicted and the target boxes",
        ),
    ),
    "diou": (
        Peer(
            "torchvision.ops.distance_box_iou_loss",
            "the same `reduction` and `eps`; values, and gradients with respect to the "
            "predicted and the target boxes",
        ),
    ),
    "ciou": (
        Peer(
            "torchvision.ops.complete_box_iou_loss",
            "the same `reduction` and `eps`, boxes of non-zero height; values, and gradients "
            "with respect to the predicted and the target boxes",
        ),
    ),
    "centerness": (
        Peer(
            "torch.nn.BCEWithLogitsLoss",
            f"targets in [0, 1], the same `reduction`; {_VALUES_AND_GRADIENTS}",
        ),
    ),
    "fcos": (),
    "dice": (
        Peer(
            "monai.losses.DiceLoss",
            '`softmax=True, to_onehot_y=True` (`mode="multiclass"`) or `sigmoid=True` '
            '(`"binary"`, `"multilabel"`), `smooth_nr=smooth, smooth_dr=smooth`, the same '
            "`weight` and `include_background` (one score per image and class) and no ignored "
            "pixels; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "tversky": (
        Peer(
            "monai.losses.TverskyLoss",
            "`softmax=True, to_onehot_y=True` or `sigmoid=True` as for `dice`, the same "
            "`alpha` and `beta` (`alpha` weights false positives), `smooth_nr=smooth, "
            "smooth_dr=smooth` and no ignored pixels; " + _VALUES_AND_GRADIENTS,
        ),
        Peer(
            "segmentation_models_pytorch.losses.TverskyLoss",
            '`mode="binary"`, the same `alpha`, `beta` and `gamma`, `smooth=0`, for one '
            "image; values",
        ),
    ),
    "jaccard": (
        Peer(
            "monai.losses.DiceLoss",
            "`jaccard=True`, `softmax=True, to_onehot_y=True` or `sigmoid=True` as for "
            "`dice`, `smooth_nr=2 * smooth, smooth_dr=2 * smooth` and no ignored pixels; "
            + _VALUES_AND_GRADIENTS,
        ),
        Peer(
            "segmentation_models_pytorch.losses.JaccardLoss",
            'the same `mode` (`"multiclass"`, `"multilabel"`), `smooth=smooth`, for one image '
            "in which every class is present; values",
        ),
    ),
    "lovasz": (
        Peer(
            "segmentation_models_pytorch.losses.LovaszLoss",
            '`mode="multiclass"` or `mode="binary"`, the same `per_image` and `ignore_index`; '
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "focal_pixelwise": (
        Peer(
            "torch.nn.functional.cross_entropy",
            '`mode="multiclass"`, `gamma=0`, `alpha=None`, the same `ignore_index`; '
            + _VALUES_AND_GRADIENTS,
        ),
        Peer(
            "segmentation_models_pytorch.losses.FocalLoss",
            '`mode="binary"` or `"multilabel"`, `alpha=None`, the same `gamma` and '
            "`ignore_index`; " + _VALUES_AND_GRADIENTS,
        ),
    ),
    "ohem_cross_entropy": (
        Peer(
            "mmseg.structures.sampler.OHEMPixelSampler",
            "the same `thresh` (its `thresh=None` is `thresh=0` here) and `min_kept` (per "
            "image): the same pixels are kept when "
            "`min_kept * B` is below the number of labelled pixels and no two pixels have the "
            "same probability; then " + _VALUES_AND_GRADIENTS + " of the mean over them",
        ),
    ),
    "mask": (
        Peer(
            "torch.nn.BCEWithLogitsLoss",
            f"the same `pos_weight` and `reduction`; {_VALUES_AND_GRADIENTS}",
        ),
    ),
    "combined_segmentation": (),
    "weighted_sum": (),
}
"""Per built-in loss: the peers it equals. An empty tuple: a composite with no single peer."""

DIFFERENCES: dict[str, tuple[Difference, ...]] = {
    "bce_with_logits": (
        Difference(
            "float32-tails",
            "without `pos_weight` (computed as the focal loss with `gamma=0`), float32 keeps "
            "the relative precision of both tails, where torch's value is exactly 0 for a "
            "confident correct negative (target 0, logit below about -17; true value "
            "about `exp(logit)`).",
        ),
    ),
    "focal": (
        Difference(
            "alpha-none",
            "`alpha=None` switches the class balance off, where torchvision takes `alpha=-1` "
            "(a negative `alpha` is refused here).",
        ),
        Difference(
            "float32-tails",
            "in float32 both tails keep their relative precision: loss and gradient within "
            "1e-3 of float64 for logits in [-30, 30], hard and soft targets (no "
            "`softplus(x) - t x` or `1 - sigmoid(x)` cancellation).",
        ),
    ),
    "asymmetric": (
        Difference(
            "float32-tails",
            "computed as `sigmoid(-x)`, the `1 - p` of a negative keeps its precision in "
            "float32: without `clip`, timm's `1 - sigmoid(x)` puts a relative error above "
            "1e-3 on the loss of negatives with logits from about 16 until the `eps` bound "
            "takes over (about 18.4), against about 1e-7 here.",
        ),
        Difference(
            "finite-gradients",
            "exponents below 1 keep the gradient finite where `1 - p_t` is 0 (clipped "
            "negatives, saturated logits), where timm's is NaN.",
        ),
    ),
    "distribution_focal": (
        Difference(
            "last-bin",
            "a target distance equal to `reg_max` is allowed (all its weight on the last "
            "bin), where mmdet's formula would index a bin past the last one (its GFL head "
            "clamps targets to `reg_max - 0.01`).",
        ),
    ),
    "ciou": (
        Difference(
            "degenerate-boxes",
            "boxes of zero height (lines, points) give finite values and gradients: the "
            "aspect angle takes the height as at least `eps`.",
        ),
    ),
    "dice": (
        Difference(
            "class-weights-length",
            "`class_weights` has one weight per channel of the logits, background included "
            "(its weight unused when `include_background=False`), where MONAI's `weight` "
            "leaves the background out then.",
        ),
        Difference(
            "binary-background",
            '`include_background=False` with `mode="binary"` is an error (the one channel is '
            "the foreground), where MONAI warns and ignores it.",
        ),
    ),
    "tversky": (
        Difference(
            "focal-per-sample",
            "`gamma` raises each (image, class) loss before the mean, where smp raises the "
            "mean over the batch pooled per class.",
        ),
    ),
    "lovasz": (
        Difference(
            "multilabel-per-channel",
            '`mode="multilabel"` averages the Lovász hinge of each channel, where smp\'s '
            "multilabel mode pools every channel into one binary problem.",
        ),
    ),
    "ohem_cross_entropy": (
        Difference(
            "mean-over-kept",
            "the loss is the mean over the kept pixels, where mmseg's cross entropy after the "
            "sampler divides the kept pixels' sum by the number of all (or all labelled) pixels.",
        ),
        Difference(
            "at-least-min-kept",
            "at least `min_kept` pixels per image are kept, every pixel tied at that boundary "
            "too; mmseg keeps the pixels below the probability of the `min_kept * B + 1`-th "
            "hardest, so with `min_kept * B` at or above the number of labelled pixels it "
            "drops the easiest one.",
        ),
    ),
    "jaccard": (
        Difference(
            "per-sample",
            "scores each image and class and averages the scores (MONAI's default), where "
            "smp's `JaccardLoss` pools the whole batch per class and scores a class absent "
            "from the target as 0.",
        ),
    ),
}
"""Per built-in loss: where it departs on purpose from a peer's convention."""


HEADER = """\
# Built-in loss catalogue

<!-- GENERATED by scripts/docs_catalogue.py from the loss registry: do not edit by hand.
     Run `python scripts/docs_catalogue.py` after changing a built-in loss; a test fails
     while this page is out of date. -->

Every built-in loss, generated from the registry: names, aliases, what the loss takes as
prediction (`expects`) and as target (`target`, see
[target kinds](registry-api.md#lossentry)), where it reads the classes (`class_dim`), whether
it also takes soft targets (`soft_targets`) and which parameter takes per-class weights
(`class_weights`), its constructor parameters with types, defaults and bounds (these are what
`get_loss` validates), and the formula it computes. Models refuse a loss that cannot take what
they feed it, and adapt their raw logits and targets to the rest (see
[Custom losses](custom-losses.md#what-the-loss-receives) and, per model, the
[losses that fit](../models-and-data.md#which-losses-fit)); call a loss module directly and
you pass those inputs yourself. A segmentation loss with a `mode` takes class indices in
`"multiclass"` mode and dense masks in `"binary"` and `"multilabel"` modes: its instance says
so in its `target` property, which models read before the registry entry.
`autotimm losses show NAME` prints the same table in a terminal.

Each entry also says which other library's loss it equals (its *peer*) and under which
convention; `tests/losses/test_losses_peers.py` names the test that checks each of these
statements. Where every built-in loss differs from its peers on purpose:
"""

TASK_TITLES = {
    "classification": "Classification",
    "detection": "Detection",
    "segmentation": "Segmentation",
}


def builtin_entries() -> list[LossEntry]:
    """The registry entries of the losses that ship with autotimm, sorted by name."""
    sys.path.insert(0, str(ROOT))
    from autotimm.losses import get_loss_registry

    return [e for e in get_loss_registry() if e.loss_class.__module__.startswith("autotimm.")]


def missing_formulas(entries: Iterable[LossEntry]) -> list[str]:
    """Names of built-in losses that have no formula in :data:`FORMULAS`."""
    return [e.name for e in entries if e.name not in FORMULAS]


def missing_peers(entries: Iterable[LossEntry]) -> list[str]:
    """Names of built-in losses that have no entry (maybe empty) in :data:`PEERS`."""
    return [e.name for e in entries if e.name not in PEERS]


def peer_lines(name: str) -> list[str]:
    """The entry's statements about its peers, as Markdown lines."""
    peers = PEERS[name]
    if not peers:
        return ["**Peers:** none; a composite of the losses above, defined by its formula.", ""]
    lines = [f"**Equals** `{p.peer}` with {p.convention}." for p in peers]
    lines = [line for pair in zip(lines, [""] * len(lines)) for line in pair]
    differences = DIFFERENCES.get(name, ())
    if differences:
        lines += ["**Differs on purpose:**", ""]
        lines += [f"- {d.text}" for d in differences]
        lines.append("")
    return lines


def rst_to_markdown(text: str) -> str:
    """``code`` -> `code`, :class:`~a.B` -> `B`, :class:`a.B` -> `a.B`."""
    text = re.sub(r":\w+:`~[\w.]*?(\w+)`", r"`\1`", text)
    text = re.sub(r":\w+:`([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def prose_of(loss_class: type) -> str:
    """The docstring's text before its first section (``Args:``, ``Example:``, ...)."""
    doc = inspect.cleandoc(loss_class.__doc__ or "")
    kept: list[str] = []
    for line in doc.splitlines():
        if re.match(r"^(Args|Arguments|Example|Examples|Attributes|Raises|Returns):\s*$", line):
            break
        kept.append(line)
    paragraphs = "\n".join(kept).strip().split("\n\n")
    return "\n\n".join(rst_to_markdown(" ".join(p.split())) for p in paragraphs)


def _cell(text: str) -> str:
    """Escape ``|`` outside code spans so it does not split a table cell."""
    parts = text.split("`")
    return "`".join(p if i % 2 else p.replace("|", r"\|") for i, p in enumerate(parts))


def _code(value: str) -> str:
    return f"`{value}`" if value else ""


def parameter_table(parameters: Iterable[ParameterInfo]) -> list[str]:
    rows = [
        "| Parameter | Type | Default | Bounds | Description |",
        "|-----------|------|---------|--------|-------------|",
    ]
    for p in parameters:
        default = "required" if p.required else _code(repr(p.default))
        rows.append(
            "| "
            + " | ".join(
                [
                    _code(p.name),
                    _code(p.base_type),
                    default,
                    _code(p.constraint) or "-",
                    _cell(rst_to_markdown(" ".join((p.description or "").split()))),
                ]
            )
            + " |"
        )
    return rows


def target_text(entry: LossEntry) -> str:
    """The entry's target kind; for a loss with a ``mode``, what each mode's instance takes,
    e.g. ``class_indices` (`multiclass`); `dense` (`multilabel`, `binary`)``."""
    return "; ".join(
        f"`{kind}` ({', '.join(f'`{m}`' for m in modes)})" if modes else f"`{kind}`"
        for kind, modes in entry.targets_by_mode().items()
    )


def _formula(name: str) -> list[str]:
    body = FORMULAS[name].strip("\n")
    return ["$$", body, "$$"]


KINDS_HEADER = "Expects | Target | Classes | Soft targets | Class weights"


def kinds_cells(entry: LossEntry) -> str:
    """The cells of :data:`KINDS_HEADER`: what the loss takes, from its registration."""
    if entry.builds_for_caller:  # what its caller feeds; each part takes what it takes
        return "what the caller feeds | (each term's own) | - | if every term does | (each term's)"
    classes = "-"
    if entry.target in ("class_indices", "dense"):
        classes = "`[N, C, ...]`" if entry.class_dim == 1 else "`[..., C]`"
    weights = "-"
    if entry.class_weights:
        broadcast = " (broadcast)" if entry.class_weights_broadcast else ""
        weights = _code(entry.class_weights) + broadcast
    soft = "yes" if entry.soft_targets else "-"
    return f"`{entry.expects}` | {target_text(entry)} | {classes} | {soft} | {weights}"


def render_entry(entry: LossEntry) -> list[str]:
    cls = entry.loss_class
    aliases = ", ".join(_code(a) for a in entry.aliases) or "-"
    lines = [
        f"### `{entry.name}`",
        "",
        f"Class: `autotimm.losses.{cls.__qualname__}` (in `{cls.__module__}`)",
        "",
        prose_of(cls),
        "",
        f"| Task | Aliases | {KINDS_HEADER} |",
        "|------|---------|---------|--------|---------|--------------|---------------|",
        f"| {', '.join(entry.tasks) or 'custom'} | {aliases} | {kinds_cells(entry)} |",
        "",
        *_formula(entry.name),
        "",
        *peer_lines(entry.name),
    ]
    if entry.parameters:
        lines += parameter_table(entry.parameters)
    else:
        lines.append("No parameters.")
    lines.append("")
    return lines


def render() -> str:
    """The page's Markdown text."""
    entries = builtin_entries()
    for table, missing in (
        ("FORMULAS", missing_formulas(entries)),
        ("PEERS", missing_peers(entries)),
    ):
        if missing:
            raise SystemExit(
                f"no {table} entry for built-in loss(es) {', '.join(missing)}: add them in "
                f"{Path(__file__).name}"
            )
    lines = [HEADER]
    lines += [f"- {d.text}" for d in GENERAL_DIFFERENCES]
    lines.append("")
    lines.append(f"| Loss | Task | Aliases | {KINDS_HEADER} |")
    lines.append("|------|------|---------|---------|--------|---------|--------------|---------------|")
    for entry in entries:
        aliases = ", ".join(_code(a) for a in entry.aliases) or "-"
        lines.append(
            f"| [`{entry.name}`](#{entry.name}) | {', '.join(entry.tasks)} | {aliases} "
            f"| {kinds_cells(entry)} |"
        )
    lines.append("")
    every_task = [entry for entry in entries if set(entry.tasks) == set(TASK_TITLES)]
    for task, title in TASK_TITLES.items():
        lines += [f"## {title}", ""]
        for entry in entries:
            if entry.tasks and entry.tasks[0] == task and entry not in every_task:
                lines += render_entry(entry)
    if every_task:
        lines += ["## Every task", ""]
        for entry in every_task:
            lines += render_entry(entry)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/docs_catalogue.py")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
