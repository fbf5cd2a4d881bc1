"""Sentinel-2 patches on disk: GeoTIFFs of 12 uint16 L2A bands (B01..B12 without B10), the
S2-100K layout, read as the (13, H, W) arrays the image encoders take (a zero band inserted at
index 10 where B10 would be, as the released models were trained).

Decoded with tifffile + imagecodecs: the patches are plain pixel arrays, so a GDAL stack would add
a large native dependency for nothing. Their georeferencing, where needed, is read by
:mod:`satclip.io.georef`. Training (``satclip.train``) and :func:`satclip.encode_images` both read
patches here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from satclip.errors import ImageError, first_line

#: Sentinel-2 bands in an S2-100K file, and where the missing B10 goes among them.
FILE_BANDS = 12
ZERO_BAND_INDEX = 10
#: Channels the image encoders take.
CHANNELS = 13


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One GeoTIFF patch as a ``(13, H, W)`` uint16 array (zero B10 inserted at index 10).

    Raises :class:`ImageError` naming the file when it is missing, not a TIFF, or not a
    12-band uint16 image.
    """
    text = os.fspath(path)
    if not Path(text).is_file():
        raise ImageError(f"no such image file: {text!r}")
    try:
        return read_s2_image(text)
    except ImportError as err:
        raise ImageError(
            f"reading GeoTIFFs needs tifffile and imagecodecs (pip install 'satclip[images]'): {err}"
        ) from None
    except Exception as err:  # tifffile raises TiffFileError, ValueError, OSError, KeyError for bad files
        raise ImageError(
            f"{text}: not a Sentinel-2 GeoTIFF patch satclip can read ({type(err).__name__}: {first_line(err)}); "
            f"expected a TIFF with {FILE_BANDS} uint16 bands (B01..B12 without B10)"
        ) from None


def read_s2_image(path: str | os.PathLike, min_size: int = 1) -> np.ndarray:
    """Reads one patch as a (13, H, W) uint16 array with the zero B10 band inserted.

    Raises ``ValueError`` (or the decoder's ``OSError``/``ValueError``) if the file is not a
    12-band uint16 image of at least ``min_size`` x ``min_size`` pixels.
    """
    import tifffile  # the train extra; imported here so that reading the index does not need it

    # maxworkers=1: each data-loading worker decodes one file on one thread; parallelism comes
    # from the workers, and more threads per worker would only oversubscribe the CPUs.
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        # The band axis comes from the file's own layout (tifffile derives the series axes from
        # SamplesPerPixel and PlanarConfiguration: "YXS" pixel-interleaved, "SYX" planar, "QYX"/"IYX"
        # one band per page), never from the shape: a 12-pixel-high patch has 12 at both ends.
        axes = series.axes
        data = tif.asarray(series=0, maxworkers=1)
    data = _bands_height_width(data, axes)
    if data.shape[0] != FILE_BANDS:
        raise ValueError(f"expected {FILE_BANDS} bands, got an image of shape {data.shape}")
    if data.dtype != np.uint16:
        raise ValueError(f"expected uint16 pixels, got {data.dtype}")
    height, width = data.shape[1:]
    if height < min_size or width < min_size:
        raise ValueError(f"image is {height} x {width} pixels, smaller than the {min_size}-pixel crop")
    out = np.zeros((CHANNELS, height, width), dtype=np.uint16)
    out[:ZERO_BAND_INDEX] = data[:ZERO_BAND_INDEX]
    out[ZERO_BAND_INDEX + 1 :] = data[ZERO_BAND_INDEX:]
    return out


def _bands_height_width(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` (with tifffile's axis letters ``axes``) as (bands, height, width)."""
    if data.ndim != len(axes):
        raise ValueError(f"the TIFF's axes {axes!r} do not match its pixel array of shape {data.shape}")
    keep = [i for i, axis in enumerate(axes) if axis in "YX" or data.shape[i] != 1]
    shape = tuple(data.shape[i] for i in keep)
    axes = "".join(axes[i] for i in keep)
    if len(axes) != 3 or "Y" not in axes or "X" not in axes:
        raise ValueError(f"expected a 3-D image (bands, height, width), got axes {axes!r} of shape {shape}")
    data = data.reshape(shape)
    band = next(i for i, axis in enumerate(axes) if axis not in "YX")
    return data.transpose(band, axes.index("Y"), axes.index("X"))


__all__ = ["CHANNELS", "FILE_BANDS", "ZERO_BAND_INDEX", "read_image", "read_s2_image"]
