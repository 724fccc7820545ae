"""``autotimm demo``: fails early on bad losses, and a tiny real run writes its table and figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from autotimm.cli import main
from autotimm.demo import parse_losses, run_demo


def test_parse_losses_reads_names_and_json_values() -> None:
    assert parse_losses("dice, focal_pixelwise:gamma=3:alpha=[1,2,3,4],combined:x=abc") == [
        ("dice", {}),
        ("focal_pixelwise", {"gamma": 3, "alpha": [1, 2, 3, 4]}),
        ("combined", {"x": "abc"}),
    ]
    with pytest.raises(ValueError, match="key=value"):
        parse_losses("dice:gamma")


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ("dice,dcie", "Did you mean 'dice'"),
        ("focal_pixelwise:gama=2", "gama: unknown argument; did you mean 'gamma'?"),
        ("dice:smooth=-1", "smooth: expected float >= 0"),
    ],
)
def test_bad_losses_fail_before_any_data_or_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], losses: str, message: str
) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--losses", losses, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert not out.exists()  # no dataset was generated, nothing trained


def test_a_tiny_demo_run_trains_prints_and_draws(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = run_demo(
        ["dice", ("focal_pixelwise", {"gamma": 1.0})],
        epochs=2,
        image_size=32,
        num_train=8,
        num_val=4,
        batch_size=4,
        out=tmp_path,
        trainer_kwargs={"enable_progress_bar": False, "logger": False},
    )
    assert [r.loss for r in results] == ["dice", "focal_pixelwise"]
    for r in results:
        assert 0.0 <= r.miou <= 1.0 and 0.0 <= r.pixel_acc <= 1.0
        assert len(r.curve) == 2 and r.final_train_loss == r.curve[-1]
        assert r.predictions.shape == (3, 32, 32)
    out = capsys.readouterr().out
    assert "val mIoU" in out and "focal_pixelwise" in out and "comparison.png" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [row["loss"] for row in saved] == ["dice", "focal_pixelwise"]
    with Image.open(tmp_path / "comparison.png") as figure:
        assert figure.format == "PNG" and figure.width > 300 and figure.height > 300
    assert (tmp_path / "data" / "train" / "images").is_dir()  # real files in the real layout


@pytest.mark.slow
def test_the_default_demo_reaches_the_promised_quality(tmp_path: Path) -> None:
    """The README's first command: default losses, epochs and data; the best mIoU >= 0.5."""
    results = run_demo(out=tmp_path, trainer_kwargs={"enable_progress_bar": False})
    assert [r.loss for r in results] == ["dice", "focal_pixelwise", "combined_segmentation"]
    assert max(r.miou for r in results) >= 0.5
    for r in results:
        assert r.curve[-1] < r.curve[0], f"{r.loss} did not learn: {r.curve}"
