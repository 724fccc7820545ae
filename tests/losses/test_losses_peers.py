"""The catalogue's statements about peers, each checked by a named test.

``docs/losses/catalogue.md`` says, per built-in loss, which other library's loss it equals and
under which convention (``PEERS`` in ``scripts/docs_catalogue.py``), and where it differs on
purpose (``DIFFERENCES``, ``GENERAL_DIFFERENCES``). :data:`STATEMENT_TESTS` names the test
that checks each statement; a statement without a test, or a test for a statement the page
no longer makes, fails here. The tests for statements not checked elsewhere follow.

MONAI and segmentation_models_pytorch are optional; their published input/expected-value
pairs check the statements without them, and a direct comparison runs when they are installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv
from helpers import ROOT

from autotimm.losses import (
    DiceLoss,
    FocalLoss,
    JaccardLoss,
    LossConfigError,
    TverskyLoss,
    get_entry,
    get_loss,
    list_available_losses,
)

D = torch.float64
HERE = Path(__file__).parent


def _load_catalogue() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "docs_catalogue", ROOT / "scripts" / "docs_catalogue.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CATALOGUE = _load_catalogue()

_CLS = "test_losses_classification.py::"
_DET = "test_losses_detection.py::"
_SEG = "test_losses_segmentation.py::"
_ROB = "test_losses_robustness.py::"
_PEERS = "test_losses_peers.py::"
_NEW_CLS = "test_losses_new_classification.py::"
_NEW_DET = "test_losses_new_detection.py::"
_MODES = "test_losses_segmentation_modes.py::"
STATEMENT_TESTS: dict[tuple[str, str], tuple[str, ...]] = {
    # (loss, peer) for PEERS; (loss, key) for DIFFERENCES; ("*", key) for GENERAL_DIFFERENCES
    ("cross_entropy", "torch.nn.CrossEntropyLoss"): (
        _CLS + "test_cross_entropy_equals_torch",
        _CLS + "test_cross_entropy_probability_targets_equal_torch",
    ),
    ("nll", "torch.nn.NLLLoss"): (_CLS + "test_nll_equals_torch",),
    ("bce_with_logits", "torch.nn.BCEWithLogitsLoss"): (
        _CLS + "test_bce_with_logits_equals_torch",
    ),
    ("bce", "torch.nn.BCELoss"): (_CLS + "test_bce_on_probabilities_equals_torch_and_formula",),
    ("mse", "torch.nn.MSELoss"): (_CLS + "test_mse_equals_torch",),
    ("focal", "torchvision.ops.sigmoid_focal_loss"): (
        _DET + "test_focal_equals_torchvision_and_textbook",
        _DET + "test_focal_soft_targets_with_gradient_use_autograd",
    ),
    ("giou", "torchvision.ops.generalized_box_iou_loss"): (
        _DET + "test_box_losses_equal_torchvision",
    ),
    ("diou", "torchvision.ops.distance_box_iou_loss"): (
        _DET + "test_box_losses_equal_torchvision",
    ),
    ("ciou", "torchvision.ops.complete_box_iou_loss"): (
        _DET + "test_box_losses_equal_torchvision",
        _DET + "test_ciou_gradient_reaches_the_target_aspect_ratio",
    ),
    ("centerness", "torch.nn.BCEWithLogitsLoss"): (_DET + "test_centerness_is_bce_with_logits",),
    ("dice", "monai.losses.DiceLoss"): (
        _PEERS + "test_dice_and_tversky_reproduce_monai_published_cases",
        _SEG + "test_monai_cross_check",
        _MODES + "test_region_losses_reproduce_monai_published_sigmoid_cases",
        _MODES + "test_dice_reproduces_monai_published_case_without_background",
        _MODES + "test_region_losses_equal_textbook_in_every_mode",
    ),
    ("tversky", "monai.losses.TverskyLoss"): (
        _PEERS + "test_dice_and_tversky_reproduce_monai_published_cases",
        _SEG + "test_monai_cross_check",
        _MODES + "test_region_losses_reproduce_monai_published_sigmoid_cases",
        _MODES + "test_region_losses_equal_textbook_in_every_mode",
    ),
    ("tversky", "segmentation_models_pytorch.losses.TverskyLoss"): (
        _MODES + "test_focal_tversky_equals_smp_on_one_image_and_differs_on_a_batch",
    ),
    ("jaccard", "monai.losses.DiceLoss"): (
        _PEERS + "test_jaccard_equals_monai_jaccard_dice",
        _MODES + "test_region_losses_reproduce_monai_published_sigmoid_cases",
        _MODES + "test_region_losses_equal_textbook_in_every_mode",
    ),
    ("jaccard", "segmentation_models_pytorch.losses.JaccardLoss"): (
        _PEERS + "test_jaccard_reproduces_smp_published_case",
        _PEERS + "test_jaccard_is_per_sample_where_smp_pools_the_batch",
        _MODES + "test_jaccard_reproduces_smp_published_multilabel_cases",
    ),
    ("lovasz", "segmentation_models_pytorch.losses.LovaszLoss"): (
        _SEG + "test_segmentation_models_pytorch_cross_check",
        _MODES + "test_lovasz_hinge_equals_textbook",
    ),
    ("focal_pixelwise", "torch.nn.functional.cross_entropy"): (
        _SEG + "test_focal_pixelwise_gamma_zero_is_cross_entropy",
    ),
    ("focal_pixelwise", "segmentation_models_pytorch.losses.FocalLoss"): (
        _MODES + "test_focal_pixelwise_on_masks_equals_textbook",
    ),
    ("ohem_cross_entropy", "mmseg.structures.sampler.OHEMPixelSampler"): (
        _MODES + "test_ohem_equals_mmseg_sampler_then_mean_over_kept",
    ),
    ("mask", "torch.nn.BCEWithLogitsLoss"): (_SEG + "test_mask_is_bce_with_logits",),
    ("bce_with_logits", "float32-tails"): (
        _PEERS + "test_bce_with_logits_keeps_the_confident_negative_tail",
    ),
    ("focal", "alpha-none"): (_PEERS + "test_focal_alpha_none_is_torchvision_alpha_minus_one",),
    ("focal", "float32-tails"): (_DET + "test_focal_float32_tails_match_float64",),
    ("ciou", "degenerate-boxes"): (_DET + "test_box_losses_empty_and_degenerate",),
    ("jaccard", "per-sample"): (_PEERS + "test_jaccard_is_per_sample_where_smp_pools_the_batch",),
    # issue 12: classification and detection
    ("bce_with_logits", "timm.loss.BinaryCrossEntropy"): (
        _NEW_CLS + "test_bce_with_logits_equals_timm_binary_cross_entropy",
        _NEW_CLS + "test_bce_with_logits_class_indices_are_one_hot_rows",
    ),
    ("asymmetric", "timm.loss.AsymmetricLossMultiLabel"): (
        _NEW_CLS + "test_asymmetric_equals_timm",
        _NEW_CLS + "test_asymmetric_binary_fast_path_equals_the_autograd_path",
        _NEW_CLS + "test_asymmetric_in_cache_sized_steps",
    ),
    ("asymmetric", "float32-tails"): (
        _NEW_CLS + "test_asymmetric_keeps_the_float32_tail_of_negatives",
    ),
    ("asymmetric", "finite-gradients"): (
        _NEW_CLS + "test_asymmetric_gradient_stays_finite_where_timm_is_nan",
    ),
    ("softmax_focal", "torch.nn.functional.cross_entropy"): (
        _NEW_CLS + "test_softmax_focal_gamma_zero_is_cross_entropy",
    ),
    ("poly1", "torch.nn.CrossEntropyLoss"): (
        _NEW_CLS + "test_poly1_with_epsilon_zero_is_torch_cross_entropy",
    ),
    ("l1", "torch.nn.functional.l1_loss"): (_NEW_DET + "test_l1_and_smooth_l1_equal_torch",),
    ("smooth_l1", "torch.nn.functional.smooth_l1_loss"): (
        _NEW_DET + "test_l1_and_smooth_l1_equal_torch",
    ),
    ("iou", "torchvision.ops.box_iou"): (_NEW_DET + "test_iou_equals_torchvision_box_iou",),
    ("quality_focal", "mmdet.models.losses.quality_focal_loss_tensor_target"): (
        _NEW_DET + "test_quality_focal_equals_mmdet",
        _NEW_DET + "test_quality_focal_in_cache_sized_steps",
    ),
    ("varifocal", "mmdet.models.losses.varifocal_loss"): (
        _NEW_DET + "test_varifocal_equals_mmdet",
    ),
    ("distribution_focal", "mmdet.models.losses.distribution_focal_loss"): (
        _NEW_DET + "test_distribution_focal_equals_mmdet",
    ),
    ("distribution_focal", "last-bin"): (
        _NEW_DET + "test_distribution_focal_takes_a_target_at_the_last_bin",
    ),
    ("dice", "class-weights-length"): (
        _MODES + "test_without_background_is_dropping_channel_zero_from_the_mean",
    ),
    ("dice", "binary-background"): (
        _MODES + "test_bad_inputs_name_the_loss_and_what_was_expected",
    ),
    ("tversky", "focal-per-sample"): (
        _MODES + "test_focal_tversky_equals_smp_on_one_image_and_differs_on_a_batch",
        _MODES + "test_tversky_gamma_raises_each_sample_and_class_loss",
    ),
    ("lovasz", "multilabel-per-channel"): (
        _MODES + "test_lovasz_multilabel_is_the_mean_of_binary_per_channel",
    ),
    ("ohem_cross_entropy", "mean-over-kept"): (
        _MODES + "test_ohem_equals_mmseg_sampler_then_mean_over_kept",
    ),
    ("ohem_cross_entropy", "at-least-min-kept"): (
        _MODES + "test_ohem_differs_from_mmseg_only_where_the_catalogue_says",
    ),
    ("*", "float32-output"): (_ROB + "test_float16_inputs", _ROB + "test_autocast_bfloat16"),
    ("*", "nothing-to-learn"): (_ROB + "test_nothing_to_learn_gives_zero_with_a_finite_gradient",),
    ("*", "bad-reduction"): (_PEERS + "test_bad_reduction_is_a_config_error_or_value_error",),
}


def _statements() -> set[tuple[str, str]]:
    peers = {(name, p.peer) for name, stated in CATALOGUE.PEERS.items() for p in stated}
    differences = {(name, d.key) for name, stated in CATALOGUE.DIFFERENCES.items() for d in stated}
    general = {("*", d.key) for d in CATALOGUE.GENERAL_DIFFERENCES}
    return peers | differences | general


def test_every_catalogue_statement_names_a_test_that_exists() -> None:
    assert _statements() == set(STATEMENT_TESTS)
    for tests in STATEMENT_TESTS.values():
        for test in tests:
            file, function = test.split("::")
            assert f"def {function}(" in (HERE / file).read_text(encoding="utf-8"), test


def test_every_builtin_loss_has_its_peers_stated() -> None:
    builtin = {
        name
        for task in ("classification", "detection", "segmentation")
        for name in list_available_losses(task=task)
        if get_entry(name).loss_class.__module__.startswith("autotimm.losses.")
    }
    assert builtin == set(CATALOGUE.PEERS)


# ------------------------------------------------------------------ focal and torchvision
def test_focal_alpha_none_is_torchvision_alpha_minus_one() -> None:
    logits = torch.randn(6, 3, dtype=D, requires_grad=True)
    target = (torch.rand(6, 3, dtype=D) > 0.5).to(D)
    ours = FocalLoss(alpha=None)(logits, target)
    theirs = tv.sigmoid_focal_loss(logits, target, alpha=-1, reduction="mean")
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    with pytest.raises(LossConfigError, match="alpha"):
        get_loss("focal", alpha=-1)


def test_bce_with_logits_keeps_the_confident_negative_tail() -> None:
    logits = torch.tensor([-20.0, 20.0, -30.0])
    target = torch.tensor([0.0, 1.0, 0.0])
    ours = get_loss("bce_with_logits", reduction="none")(logits, target)
    x = logits.to(D)
    exact = torch.where(target == 1, F.softplus(-x), F.softplus(x))  # float64: -log p_t
    torch.testing.assert_close(ours.to(D), exact, rtol=1e-6, atol=0)
    theirs = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert theirs[0].item() == 0.0 and theirs[2].item() == 0.0  # what the catalogue says


# ------------------------------------------------------------------ reduction
@pytest.mark.parametrize("name", sorted(CATALOGUE.PEERS))
def test_bad_reduction_is_a_config_error_or_value_error(name: str) -> None:
    with pytest.raises(LossConfigError, match="reduction"):
        get_loss(name, reduction="xyz")
    from test_losses_robustness import make_case  # the case of every built-in loss

    case = make_case(name)
    case.loss.reduction = "xyz"  # what a directly built module with a typo holds
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'xyz'"):
        case.call(case.leaf)


# ------------------------------------------------------------------ MONAI
# MONAI's tests/losses/test_dice_loss.py and test_tversky_loss.py: logits [2, 2, 3] (softmax,
# to_onehot_y, smooth_nr = smooth_dr = 1e-4) with published values, checked there at rtol 1e-5
# (dice) and 1e-4 (Tversky). Their target [B, 1, N] is our class-index target [B, N].
MONAI_LOGITS = [[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
MONAI_TARGET = [[1, 0, 0], [1, 1, 0]]


def test_dice_and_tversky_reproduce_monai_published_cases() -> None:
    logits, target = torch.tensor(MONAI_LOGITS), torch.tensor(MONAI_TARGET)
    dice = DiceLoss(smooth=1e-4)
    assert dice(logits, target).item() == pytest.approx(0.383713, rel=1e-5)
    dice.reduction = "sum"
    assert dice(logits, target).item() == pytest.approx(1.534853, rel=1e-5)
    tversky = TverskyLoss(smooth=1e-4, reduction="none")
    expected = torch.tensor([[0.210961, 0.295339], [0.599952, 0.428547]])
    torch.testing.assert_close(tversky(logits, target), expected, rtol=1e-4, atol=0)
    tversky.reduction = "mean"
    assert tversky(logits, target).item() == pytest.approx(0.383713, rel=1e-4)


def test_jaccard_equals_monai_jaccard_dice() -> None:
    monai_losses = pytest.importorskip("monai.losses")
    logits = torch.randn(3, 4, 7, 5, dtype=D, requires_grad=True)
    target = torch.randint(0, 4, (3, 7, 5))
    for smooth in (1e-5, 1.0):
        ours = JaccardLoss(smooth=smooth)(logits, target)
        theirs = monai_losses.DiceLoss(
            jaccard=True,
            softmax=True,
            to_onehot_y=True,
            smooth_nr=2 * smooth,
            smooth_dr=2 * smooth,
        )(logits, target.unsqueeze(1))
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        grads = [torch.autograd.grad(value, logits)[0] for value in (ours, theirs)]
        torch.testing.assert_close(*grads, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ segmentation_models_pytorch
def _logits_of(probabilities: list[list[list[float]]]) -> torch.Tensor:
    """Logits whose softmax is the given 0/1 probabilities to within exp(-60)."""
    return 60.0 * torch.tensor(probabilities, dtype=D)


def test_jaccard_reproduces_smp_published_case() -> None:
    """smp's tests/test_losses.py, test_multiclass_jaccard_loss: one image, both classes
    present, probabilities [[1, 0, 1, 0], [0, 1, 0, 1]] against [1, 1, 0, 0] give 1 - 1/3."""
    logits = _logits_of([[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]])
    loss = JaccardLoss(smooth=0.0)(logits, torch.tensor([[1, 1, 0, 0]]))
    assert loss.item() == pytest.approx(1 - 1 / 3, abs=1e-12)


def test_jaccard_is_per_sample_where_smp_pools_the_batch() -> None:
    """Two images, one predicted perfectly and one perfectly wrong: ours scores each image
    (0 and 1) and averages, 1/2; pooling the batch per class gives IoU 2 / (4 + 4 - 2) = 1/3
    for both classes, a loss of 2/3. With smp installed, its JaccardLoss is that pooled 2/3,
    and equals ours on each image alone."""
    probabilities = [[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]] * 2
    logits = _logits_of(probabilities)
    target = torch.tensor([[0, 0, 1, 1], [1, 1, 0, 0]])
    per_image = JaccardLoss(smooth=0.0, reduction="none")(logits, target)  # [B, C]
    torch.testing.assert_close(per_image, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D))
    assert JaccardLoss(smooth=0.0)(logits, target).item() == pytest.approx(0.5, abs=1e-12)
    smp_losses = _optional_smp()
    if smp_losses is None:
        return
    smp_jaccard = smp_losses.JaccardLoss("multiclass", smooth=0.0)
    assert smp_jaccard(logits.float(), target).item() == pytest.approx(2 / 3, abs=1e-6)
    for image in range(2):
        alone = smp_jaccard(logits[image : image + 1].float(), target[image : image + 1])
        assert alone.item() == pytest.approx(per_image[image].mean().item(), abs=1e-6)


def _optional_smp() -> ModuleType | None:
    try:
        import segmentation_models_pytorch.losses as smp_losses
    except ImportError:
        return None
    return smp_losses
