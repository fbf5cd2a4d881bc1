"""The SatCLIP model (image encoder + location encoder + logit scale) and its LightningModule.

Checkpoint layout (what :func:`satclip.load` reads, and the released checkpoints use):
``state_dict`` keys ``model.visual.*`` (timm names), ``model.location.nnet.*`` and
``model.logit_scale``; ``hyper_parameters`` holding ``embed_dim``, ``le_type``, ``pe_type``,
``legendre_polys``, ``harmonics_calculation``, ``capacity``, ``num_hidden_layers``,
``in_channels``, ... (the ``__init__`` arguments of :class:`SatCLIPModule`).

Numerics under mixed precision: only the image encoder runs under autocast (bf16/fp16). The
location encoder runs with autocast off in its own dtype: its first SIREN layer computes
``sin(30 * W x)``, so a bf16 rounding of ``W x`` (8 bits) would move the sine's phase by up to
~0.1 rad; the features are normalised and compared in float32.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from satclip.errors import CheckpointError, ModelConfigError
from satclip.harmonics.values import check_degrees
from satclip.models.backbones import create_image_encoder
from satclip.models.image import ImageEncoder, ImageEncoderConfig
from satclip.models.location import LocationEncoder, build_location_encoder
from satclip.models.satclip import SatCLIP
from satclip.train.encoders import check_encoder_name, freeze_all_but_head, load_backbone_weights
from satclip.train.errors import DatasetError, TrainingConfigError
from satclip.train.loss import clip_loss

LOCATION_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: Precisions that would cast the location encoder's weights to 16 bits (see module docstring).
_UNSAFE_PRECISIONS = ("16-true", "bf16-true", "transformer-engine")


class SatCLIPModule(pl.LightningModule):
    """Contrastive training of a SatCLIP model.

    Args:
        image_encoder: ``resnet18``, ``resnet50`` or ``vit16`` (ViT-S/16), built by timm.
        embed_dim: size of the shared embedding space.
        image_size: side of the (square) input crops; ``satclip-train`` passes it to the data.
        in_channels: image channels (13: Sentinel-2 L2A with a zero B10 band).
        legendre_polys: number of Legendre degrees L of the SH positional encoding (L*L features).
        capacity: width of the SIREN's hidden layers.
        num_hidden_layers: SIREN hidden layers.
        location_dtype: ``float64`` (default; as released) or ``float32`` for the location encoder.
        learning_rate, weight_decay: AdamW settings; no weight decay on biases, norms and the logit scale.
        pretrained_weights: backbone weights (e.g. SSL4EO-S12 MoCo) as a local file or ``hf://owner/repo/file``.
        freeze_backbone: train only the image encoder's head. ``None``: freeze when
            ``pretrained_weights`` are given (the released recipe), train everything otherwise.
        le_type, pe_type, harmonics_calculation: the location encoder family, stored for
            checkpoint readers; only the values satclip implements are accepted.
    """

    def __init__(
        self,
        image_encoder: str = "resnet18",
        embed_dim: int = 256,
        image_size: int = 256,
        in_channels: int = 13,
        legendre_polys: int = 10,
        capacity: int = 256,
        num_hidden_layers: int = 2,
        location_dtype: str = "float64",
        learning_rate: float = 1e-4,
        weight_decay: float = 0.01,
        pretrained_weights: str | None = None,
        freeze_backbone: bool | None = None,
        le_type: str = "sphericalharmonics",
        pe_type: str = "siren",
        harmonics_calculation: str = "analytic",
    ):
        super().__init__()
        check_encoder_name(image_encoder)
        check_degrees(legendre_polys)
        for name, value in (
            ("embed_dim", embed_dim),
            ("image_size", image_size),
            ("in_channels", in_channels),
            ("capacity", capacity),
            ("num_hidden_layers", num_hidden_layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if location_dtype not in LOCATION_DTYPES:
            raise TrainingConfigError(
                f"model.location_dtype must be one of {list(LOCATION_DTYPES)}, got {location_dtype!r}"
            )
        if not learning_rate > 0 or not weight_decay >= 0:
            raise TrainingConfigError(
                f"need learning_rate > 0 and weight_decay >= 0, got {learning_rate} and {weight_decay}"
            )
        for name, choice, supported in (
            ("le_type", le_type, "sphericalharmonics"),
            ("pe_type", pe_type, "siren"),
            ("harmonics_calculation", harmonics_calculation, "analytic"),
        ):
            if choice != supported:
                raise TrainingConfigError(
                    f"model.{name}={choice!r} is not supported; satclip trains {name}={supported!r}"
                )
        self.save_hyperparameters()

        frozen = pretrained_weights is not None if freeze_backbone is None else freeze_backbone
        try:
            config = ImageEncoderConfig(image_encoder, embed_dim, in_channels, image_size)
            visual = create_image_encoder(image_encoder, embed_dim, in_channels, image_size)
        except (ModelConfigError, CheckpointError) as err:
            raise TrainingConfigError(str(err)) from None
        if pretrained_weights is not None:
            load_backbone_weights(visual, pretrained_weights)
        elif frozen:
            warnings.warn(
                "freeze_backbone=True without pretrained_weights: the image backbone stays at its random "
                "initialisation and only its head is trained",
                stacklevel=2,
            )
        if frozen:
            freeze_all_but_head(visual)
        location = build_location_encoder(legendre_polys, embed_dim, capacity, num_hidden_layers)
        location.to(LOCATION_DTYPES[location_dtype])
        self.model = SatCLIP(ImageEncoder(config, visual=visual), location, backbone_frozen=frozen)

    # ------------------------------------------------------------------ training

    def setup(self, stage: str) -> None:
        precision = str(self.trainer.precision) if self._trainer is not None else ""
        if precision in _UNSAFE_PRECISIONS:
            raise TrainingConfigError(
                f"trainer.precision={precision!r} would cast the location encoder to 16 bits; "
                "use 'bf16-mixed' (or '16-mixed'), which keeps it in its own dtype"
            )

    def _loss(self, batch: dict[str, Any]) -> tuple[Tensor, int]:
        points = batch["point"]
        sh = batch.get("sh")
        if sh is not None and sh.shape[-1] != self.hparams["legendre_polys"] ** 2:
            raise TrainingConfigError(
                f"the batch carries SH features of {sh.shape[-1]} columns but the model has "
                f"legendre_polys={self.hparams['legendre_polys']}; set data.legendre_polys to the model's"
            )
        image_features, location_features = self.model(batch["image"], points, sh)
        return clip_loss(image_features, location_features, self.model.logit_scale), points.shape[0]

    def _is_empty(self, batch: dict[str, Any]) -> bool:
        """True when every file of the batch was unreadable (the data module dropped them all)."""
        if batch["point"].shape[0]:
            return False
        if self._trainer is not None and self.trainer.world_size > 1:
            # Skipping the step on one rank only would leave the others waiting in the gradient
            # all-reduce forever; a clear stop is better than a hang.
            raise DatasetError(
                "every image of a batch was unreadable (see the SkippedImageWarnings); "
                "under multi-device training such a batch cannot be skipped - fix or remove those files"
            )
        warnings.warn("skipping a step: every image of its batch was unreadable", stacklevel=2)
        return True

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if self._is_empty(batch):
            return None  # Lightning skips the optimizer step
        loss, n = self._loss(batch)
        # sync_dist: the logged value is the mean over ranks (one scalar all-reduce per step).
        self.log("train_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("logit_scale", self.model.logit_scale.exp().detach(), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if self._is_empty(batch):
            return None
        loss, n = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, sync_dist=True, batch_size=n)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            # Biases, norm gains (1-D) and the temperature are not weights to shrink.
            if param.ndim < 2 or name.endswith("bias") or name == "logit_scale":
                no_decay.append(param)
            else:
                decay.append(param)
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams["learning_rate"],
        )

    @property
    def location_encoder(self) -> LocationEncoder:
        """The trained location encoder (what :func:`satclip.load` gives from a checkpoint)."""
        return self.model.location
