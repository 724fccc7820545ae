"""``strategy="ddp"`` and ``"ddp_spawn"`` with custom registered losses: 2 CPU processes
(gloo), a few steps.

Lightning's "ddp" launcher re-runs the *script* for every extra process, so the test writes a
script and runs it in a subprocess. The custom loss is registered at the script's module
level, so every process has it (registering inside ``main()`` only on rank 0 would not be
enough). "ddp_spawn" pickles the model to send it to the new processes, so it also shows
that a model pickles with its loss.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader

    from autotimm import AutoTrainer, ImageClassifier
    from autotimm.losses import register_custom_loss


    class ScaledCrossEntropy(nn.Module):
        def __init__(self, num_classes: int, scale: float = 1.0) -> None:
            super().__init__()
            self.num_classes = num_classes
            self.scale = scale

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return self.scale * nn.functional.cross_entropy(logits, target)


    # module level: every DDP process imports this script and registers the loss
    register_custom_loss("ddp_scaled_ce", ScaledCrossEntropy)


    def main(out: Path) -> None:
        torch.manual_seed(0)
        # 12 samples: 6 per rank, 3 steps of 2 = one epoch, so validation and checkpointing run
        samples = [
            {"image": torch.randn(3, 32, 32), "label": torch.tensor(i % 3)} for i in range(12)
        ]
        model = ImageClassifier(
            "resnet10t",
            num_classes=3,
            loss_fn="ddp_scaled_ce",
            loss_kwargs={"scale": 2.0},
            pretrained=False,
        )
        trainer = AutoTrainer(
            accelerator="cpu",
            devices=2,
            strategy="ddp",
            max_steps=3,
            limit_val_batches=1,
            num_sanity_val_steps=0,
            default_root_dir=out / "runs",
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(
            model,
            train_dataloaders=DataLoader(samples, batch_size=2),
            val_dataloaders=DataLoader(samples, batch_size=4),
        )
        rank_result = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "backend": dist.get_backend() if dist.is_initialized() else None,
            "global_step": trainer.global_step,
            "num_classes": model.loss.module.num_classes,
            "scale": model.loss.module.scale,
            "weight_sum": float(sum(p.detach().sum() for p in model.parameters())),
        }
        (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(rank_result))
        if trainer.is_global_zero:
            path = trainer.checkpoint_callback.best_model_path
            hparams = torch.load(path, weights_only=True)["hyper_parameters"]
            loaded = ImageClassifier.load_from_checkpoint(path)
            result = {
                "checkpoint_loss_fn": hparams["loss_fn"],
                "loaded_loss": type(loaded.loss.module).__name__,
                "loaded_scale": loaded.loss.module.scale,
            }
            (out / "checkpoint.json").write_text(json.dumps(result))


    if __name__ == "__main__":
        main(Path(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_a_custom_registered_loss(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for rank, result in enumerate(ranks):
        assert result["rank"] == rank and result["world_size"] == 2
        assert result["backend"] == "gloo" and result["global_step"] == 3
        assert (result["num_classes"], result["scale"]) == (3, 2.0)
    # DDP keeps the replicas identical
    assert ranks[0]["weight_sum"] == pytest.approx(ranks[1]["weight_sum"], rel=1e-6)

    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert checkpoint == {
        "checkpoint_loss_fn": {
            "name": "ddp_scaled_ce",
            "params": {"num_classes": 3, "scale": 2.0},
            "class_path": "__main__.ScaledCrossEntropy",
        },
        "loaded_loss": "ScaledCrossEntropy",
        "loaded_scale": 2.0,
    }


SPAWN_SCRIPT = textwrap.dedent(
    """
    import json
    import sys
    from pathlib import Path

    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from lightning.pytorch import Callback

    from autotimm import AutoTrainer, SemanticSegmentor
    from autotimm.losses import register_custom_loss


    class WeightedPixelCrossEntropy(nn.Module):
        def __init__(self, class_weights: torch.Tensor, ignore_index: int = -100) -> None:
            super().__init__()
            self.register_buffer("class_weights", class_weights)
            self.ignore_index = ignore_index

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(
                logits, target, weight=self.class_weights, ignore_index=self.ignore_index
            )


    register_custom_loss("spawn_weighted_ce", WeightedPixelCrossEntropy, task="segmentation")


    class Report(Callback):
        # runs in each spawned process, on the model unpickled there

        def __init__(self, path: Path) -> None:
            self.path = path

        def on_train_end(self, trainer, model) -> None:
            result = {
                "global_step": trainer.global_step,
                "world_size": trainer.world_size,
                "loss": type(model.loss.module).__name__,
                "weights": model.loss.module.class_weights.tolist(),
                "trained": float(trainer.callback_metrics["train/loss"]),
            }
            (self.path / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


    def main(out: Path) -> None:
        torch.manual_seed(0)
        samples = [
            {"image": torch.randn(3, 32, 32), "mask": torch.randint(0, 3, (32, 32))}
            for _ in range(8)
        ]
        for name in ("spawn_weighted_ce", "combined_segmentation"):
            model = SemanticSegmentor(
                "resnet10t",
                num_classes=3,
                loss_fn=name,
                class_weights=[1.0, 2.0, 3.0],
                decoder_channels=16,
                pretrained=False,
            )
            trainer = AutoTrainer(
                accelerator="cpu",
                devices=2,
                strategy="ddp_spawn",
                max_steps=2,
                limit_val_batches=1,
                num_sanity_val_steps=0,
                default_root_dir=out / name,
                enable_progress_bar=False,
                enable_model_summary=False,
                logger=False,
                enable_checkpointing=False,
                callbacks=[Report(out / name)],
            )
            (out / name).mkdir()
            trainer.fit(
                model,
                train_dataloaders=DataLoader(samples, batch_size=2),
                val_dataloaders=DataLoader(samples, batch_size=2),
            )


    if __name__ == "__main__":
        main(Path(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_ddp_spawn_pickles_models_with_a_custom_and_a_composite_loss(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp_spawn.py"
    script.write_text(SPAWN_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    for name, loss in (
        ("spawn_weighted_ce", "WeightedPixelCrossEntropy"),
        ("combined_segmentation", "CombinedSegmentationLoss"),
    ):
        for rank in (0, 1):
            result = json.loads((tmp_path / name / f"rank{rank}.json").read_text())
            assert (result["global_step"], result["world_size"], result["loss"]) == (2, 2, loss)
            assert result["weights"] == [1.0, 2.0, 3.0]  # the model's class_weights reached it
            assert result["trained"] > 0
