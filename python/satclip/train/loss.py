"""The symmetric CLIP loss, with negatives from every rank under data-parallel training.

Each rank scores its own images against *all* ranks' locations and its own locations against
all ranks' images (cross-entropy both ways, averaged). The features are all-gathered with
``torch.distributed.nn.functional.all_gather``, whose backward sums the gradients of every
rank's loss back to the rank that made each feature; DDP then averages the parameter
gradients over ranks, which gives exactly the gradient of the loss over the global batch (as
if all rows were scored against all columns on one device), at 1/world_size of the compute.

Ranks may hold different numbers of samples (a skipped corrupt file makes a batch one
shorter), so batches are padded to the largest for the gather and the padding is cut off.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_features(features: Tensor) -> tuple[Tensor, int]:
    """All ranks' rows of ``features`` (with gradients), and where this rank's rows start."""
    if not _distributed():
        return features, 0
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([features.shape[0]], device=features.device)
    sizes_list = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes_list, n)
    sizes = [int(s) for s in sizes_list]
    longest = max(sizes)
    padded = F.pad(features, (0, 0, 0, longest - features.shape[0]))
    gathered = all_gather(padded)
    rank = dist.get_rank()
    return torch.cat([g[:s] for g, s in zip(gathered, sizes, strict=False)]), sum(sizes[:rank])


def clip_loss(image_features: Tensor, location_features: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE over matching (image, location) pairs.

    ``image_features`` and ``location_features`` are (B, D) and L2-normalised; row i of each is a
    positive pair. ``logit_scale`` is the log of the inverse temperature. Returns a scalar.
    """
    if image_features.shape != location_features.shape:
        raise ValueError(
            f"image and location features must have the same shape, got {tuple(image_features.shape)} "
            f"and {tuple(location_features.shape)}"
        )
    all_images, offset = gather_features(image_features)
    all_locations, _ = gather_features(location_features)
    n = image_features.shape[0]
    if n == 0:
        # No rows on this rank (the gathers above still ran, so other ranks are not left waiting).
        return (image_features.sum() + location_features.sum()) * 0.0 + logit_scale * 0.0
    scale = logit_scale.exp()
    labels = torch.arange(offset, offset + n, device=image_features.device)
    logits_per_image = scale * image_features @ all_locations.T
    logits_per_location = scale * location_features @ all_images.T
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_location, labels)) / 2
