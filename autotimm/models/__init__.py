"""The autotimm models: LightningModules on timm backbones with registry losses.

- :class:`ImageClassifier`: ``[B, num_classes]`` logits.
- :class:`SemanticSegmentor`: DeepLabV3+; ``[B, num_classes, H, W]`` logits.
- :class:`ObjectDetector`: FCOS; ``predict`` gives boxes, scores and labels.
- :class:`InstanceSegmentor`: FCOS + RoI mask head; ``predict`` adds masks.

Every loss argument (``loss_fn``, ``cls_loss_fn``, ``reg_loss_fn``, ``mask_loss_fn``) takes a
registry name or alias, a :class:`~autotimm.losses.LossSpec` or an ``nn.Module``. Each model
says what it feeds each of them in one classmethod, ``Model.loss_slots(init_args)``, and
resolves them through :func:`autotimm.losses.resolve.resolve_loss`, which refuses a loss that
does not fit; checkpoints store losses as plain specs. A model calls one resolved loss,
``model.loss`` (plus ``model.mask_loss`` for the instance segmentor's mask head), a
:class:`~autotimm.losses.model_loss.ModelLoss` whose ``.module`` is the loss module.

The pieces they share live in small modules: ``task`` (the step template, the
``loss_slots`` hook and the optimiser hook), ``optim`` (timm's AdamW, warmup + cosine),
``backbones``, ``batches`` (unpacking and checking batches), ``checks`` (argument checks),
``hparams``, ``heads`` and ``fcos`` (FCOS geometry).
"""

from autotimm.models.classifier import ImageClassifier
from autotimm.models.detector import ObjectDetector
from autotimm.models.instance_segmentor import InstanceSegmentor
from autotimm.models.segmentor import SemanticSegmentor

__all__ = ["ImageClassifier", "InstanceSegmentor", "ObjectDetector", "SemanticSegmentor"]
