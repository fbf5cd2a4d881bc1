"""The two-tower SatCLIP model: an image encoder and a location encoder that map Sentinel-2
patches and [lon, lat] points into one embedding space, and the learnable temperature that
scales their cosine similarities.

One class serves inference (:func:`satclip.locate`, :func:`satclip.similarity_map` take it as
``model=``) and training (``satclip.train`` wraps it in a LightningModule). Its state-dict keys
are the released checkpoints' layout below ``model.``: ``visual.<timm name>`` for the image
backbone, ``location.*`` for the location encoder, ``logit_scale``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from satclip.io.pretrained import PretrainedMixin
from satclip.models.backbones import classifier_head
from satclip.models.image import ImageEncoder
from satclip.models.location import LocationEncoder

#: CLIP's initial temperature 0.07, stored as the log of its inverse.
INITIAL_LOGIT_SCALE = math.log(1 / 0.07)


class SatCLIP(nn.Module, PretrainedMixin):
    """Image encoder ``visual`` (a timm backbone), location encoder ``location`` and the
    learnable ``logit_scale`` (log inverse temperature). ``save_pretrained`` /
    ``from_pretrained`` / ``push_to_hub`` follow the Hugging Face Hub's conventions
    (:mod:`satclip.io.pretrained`).

    Parameters
    ----------
    image:
        The image half; its backbone is shared (not copied) as ``self.visual``.
    location:
        The location half (SH + SIREN).
    logit_scale:
        Initial log inverse temperature (CLIP's log(1/0.07) unless a checkpoint says otherwise).
    backbone_frozen:
        Only the image head trains: the backbone stays in eval mode (batch-norm statistics do not
        drift) and runs without autograd bookkeeping.
    """

    def __init__(
        self,
        image: ImageEncoder,
        location: LocationEncoder,
        *,
        logit_scale: float = INITIAL_LOGIT_SCALE,
        backbone_frozen: bool = False,
    ):
        super().__init__()
        self.visual = image.visual
        self.location = location
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale), dtype=torch.float32))
        self.backbone_frozen = backbone_frozen
        # Not a registered submodule: it shares ``visual``, whose keys must stay ``visual.*``.
        object.__setattr__(self, "_image_encoder", image)
        self.train()  # modules start in training mode; put a frozen backbone in eval mode now

    @property
    def image_encoder(self) -> ImageEncoder:
        """The image half as an :class:`~satclip.models.image.ImageEncoder` (for
        :func:`satclip.encode_images`), sharing this model's weights."""
        image: ImageEncoder = self.__dict__["_image_encoder"]
        return image

    @property
    def location_encoder(self) -> LocationEncoder:
        """The location half (for :func:`satclip.encode`)."""
        return self.location

    def train(self, mode: bool = True) -> SatCLIP:
        super().train(mode)
        if self.backbone_frozen:
            self.visual.eval()
            classifier_head(self.visual).train(mode)
        return self

    def encode_image(self, images: Tensor) -> Tensor:
        """(B, C, S, S) preprocessed images -> (B, D) float32 features (not normalised)."""
        if not self.backbone_frozen:
            return self.visual(images).float()
        with torch.no_grad():
            features = self.visual.forward_features(images)  # type: ignore[operator]  # timm's API
        head_out: Tensor = self.visual.forward_head(features)  # type: ignore[operator]
        return head_out.float()

    def encode_location(self, points: Tensor, sh: Tensor | None = None) -> Tensor:
        """[lon, lat] (B, 2) -> (B, D) float32 features (not normalised).

        ``sh`` are the SH features of ``points`` when a data loader computed them already. The
        location encoder runs in its own dtype (float64 as released), outside any autocast.
        """
        dtype = next(self.location.nnet.parameters()).dtype
        with torch.autocast(device_type=points.device.type, enabled=False):
            if sh is None:
                return self.location(points).float()
            return self.location.nnet(sh.to(dtype)).float()

    def forward(self, images: Tensor, points: Tensor, sh: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """L2-normalised (image features, location features), both (B, D) float32."""
        image_features = F.normalize(self.encode_image(images), dim=1)
        location_features = F.normalize(self.encode_location(points, sh), dim=1)
        return image_features, location_features

    def logits(self, images: Tensor, points: Tensor) -> Tensor:
        """(B_images, B_points) similarities scaled by the learnt temperature, as in training."""
        image_features, location_features = self(images, points)
        return self.logit_scale.exp() * image_features @ location_features.T


__all__ = ["INITIAL_LOGIT_SCALE", "SatCLIP"]
