"""Augmentations: random crop, horizontal/vertical flips, 3x3 Gaussian blur, coordinate jitter.

They are split by where they are cheapest. Crops and flips only move uint16 pixels, so the
data-loading workers do them on each sample (and ship half the bytes a float image would
need). The blur is arithmetic on every pixel - about 8 ms per 13 x 256 x 256 patch on one CPU
core, half the cost of decoding the GeoTIFF - so it runs batched on the training device
instead (:func:`random_gaussian_blur`), after the transfer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: Range of the blur's standard deviation in pixels, drawn per image (torchvision's default
#: for a 3x3 ``GaussianBlur``, which the released models were trained with).
BLUR_SIGMA_RANGE = (0.1, 2.0)


def random_crop_and_flip(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` x ``size`` crop of a (C, H, W) image, flipped left-right and up-down
    each with probability 1/2. Returns a contiguous copy."""
    height, width = image.shape[1:]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    out = image[:, top : top + size, left : left + size]
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
    if rng.random() < 0.5:
        out = out[:, ::-1, :]
    return np.ascontiguousarray(out)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` crop of a (C, H, W) image (for validation: no randomness)."""
    height, width = image.shape[1:]
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(image[:, top : top + size, left : left + size])


def jitter_location(lon: float, lat: float, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """Moves a point by up to ``radius`` degrees in lon and lat (uniform, both signs).

    The result stays a valid location: longitude wraps around the antimeridian, latitude is
    clamped at the poles. (The original code added ``U(0, radius)``, a bias towards north-east,
    and could leave the valid range.)
    """
    if radius <= 0:
        return lon, lat
    lon = lon + float(rng.uniform(-radius, radius))
    lat = lat + float(rng.uniform(-radius, radius))
    if lon > 180.0 or lon < -180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    return lon, min(90.0, max(-90.0, lat))


def gaussian_kernel_3(sigma: Tensor) -> Tensor:
    """1-D 3-tap Gaussian kernels, one per sigma: shape (B, 3), each row summing to 1."""
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=sigma.device, dtype=sigma.dtype)
    weights = torch.exp(-(offsets[None, :] ** 2) / (2 * sigma[:, None] ** 2))
    return weights / weights.sum(dim=1, keepdim=True)


def random_gaussian_blur(
    images: Tensor, sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE, generator: torch.Generator | None = None
) -> Tensor:
    """Blurs each image of a (B, C, H, W) float batch with a 3x3 Gaussian of its own random sigma.

    The 2-D Gaussian is separable, so this is a 3-tap filter along each axis with reflected
    borders - a few fused elementwise ops per axis, on whatever device the batch is on.
    """
    if images.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(images.shape)}")
    batch = images.shape[0]
    low, high = sigma_range
    sigma = torch.rand(batch, generator=generator, device=images.device, dtype=torch.float32)
    sigma = low + (high - low) * sigma
    kernel = gaussian_kernel_3(sigma).to(images.dtype)
    left, mid, right = (kernel[:, i].view(batch, 1, 1, 1) for i in range(3))
    padded = torch.nn.functional.pad(images, (1, 1, 0, 0), mode="reflect")
    images = left * padded[..., :-2] + mid * padded[..., 1:-1] + right * padded[..., 2:]
    padded = torch.nn.functional.pad(images, (0, 0, 1, 1), mode="reflect")
    return left * padded[..., :-2, :] + mid * padded[..., 1:-1, :] + right * padded[..., 2:, :]
