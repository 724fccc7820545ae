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
\ell = -\,w \left[ p_w\, y \log \sigma(x) + (1 - y) \log\bigl(1 - \sigma(x)\bigr) \right]
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
\ell_{b,c} = 1 - \frac{2 \sum_i p_{b,c,i}\, g_{b,c,i} + s}{\sum_i p_{b,c,i} + \sum_i g_{b,c,i} + s}
""",
    "tversky": r"""
\ell_{b,c} = 1 - \frac{TP + s}{TP + \alpha\, FP + \beta\, FN + s},
\quad TP = \sum_i p\, g,\ FP = \sum_i p\,(1 - g),\ FN = \sum_i (1 - p)\, g
""",
    "jaccard": r"""
\ell_{b,c} = 1 - \frac{\sum_i p\, g + s}{\sum_i p + \sum_i g - \sum_i p\, g + s}
""",
    "lovasz": r"""
\ell = \frac{1}{|\mathcal{C}_{present}|} \sum_{c \in \mathcal{C}_{present}}
  \sum_{i} m_{\pi_i}(c)\, \bigl[\Delta J_c(\pi_1..\pi_i) - \Delta J_c(\pi_1..\pi_{i-1})\bigr],
\quad m_i(c) = |g_i(c) - p_i(c)| \text{ sorted decreasingly by } \pi
""",
    "focal_pixelwise": r"""
\ell_i = -\,w_{y_i}\, (1 - p_{i, y_i})^{\gamma} \log p_{i, y_i},
\quad p_i = \mathrm{softmax}(x_i)
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
            "`softmax=True, to_onehot_y=True, smooth_nr=smooth, smooth_dr=smooth` (background "
            "included, one score per image and class) and no ignored pixels; "
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "tversky": (
        Peer(
            "monai.losses.TverskyLoss",
            "`softmax=True, to_onehot_y=True`, the same `alpha` and `beta` (`alpha` weights "
            "false positives), `smooth_nr=smooth, smooth_dr=smooth` and no ignored pixels; "
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "jaccard": (
        Peer(
            "monai.losses.DiceLoss",
            "`jaccard=True, softmax=True, to_onehot_y=True, smooth_nr=2 * smooth, "
            "smooth_dr=2 * smooth` and no ignored pixels; " + _VALUES_AND_GRADIENTS,
        ),
        Peer(
            "segmentation_models_pytorch.losses.JaccardLoss",
            '`mode="multiclass"`, `smooth=smooth`, for one image in which every class is '
            "present; values",
        ),
    ),
    "lovasz": (
        Peer(
            "segmentation_models_pytorch.losses.LovaszLoss",
            '`mode="multiclass"`, the same `per_image` and `ignore_index`; '
            + _VALUES_AND_GRADIENTS,
        ),
    ),
    "focal_pixelwise": (
        Peer(
            "torch.nn.functional.cross_entropy",
            "`gamma=0`, `alpha=None`, the same `ignore_index`; " + _VALUES_AND_GRADIENTS,
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
    "ciou": (
        Difference(
            "degenerate-boxes",
            "boxes of zero height (lines, points) give finite values and gradients: the "
            "aspect angle takes the height as at least `eps`.",
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
you pass those inputs yourself. `autotimm losses show NAME` prints the same table in a
terminal.

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
    return f"`{entry.expects}` | `{entry.target}` | {classes} | {soft} | {weights}"


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
