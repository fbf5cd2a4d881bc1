"""Where a GeoTIFF patch is: the [lon, lat] of its centre, from its GeoTIFF tags.

S2-100K patches are in WGS 84 / UTM (EPSG:326zz north, 327zz south) with a pixel scale and one
tie point. This module reads those tags with tifffile (no GDAL) and converts UTM to longitude /
latitude itself, with the Krueger series for the transverse Mercator projection (terms to n^3;
sub-millimetre within a zone), so the common case needs no projection library. Other CRSs go
through pyproj when it is installed (the ``geo`` extra); without it their location is unknown.

Only used to report how far a guess is from the truth (``satclip locate``); embedding never
needs it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from satclip.errors import ImageError
from satclip.points.sphere import EARTH_RADIUS_KM, great_circle_km

#: WGS 84 ellipsoid, UTM scale and false easting / northing.
_A = 6378137.0
_F = 1 / 298.257223563
_K0 = 0.9996
_E0 = 500_000.0
_N0_SOUTH = 10_000_000.0


@dataclass(frozen=True)
class Georeference:
    """The centre of a patch and the CRS it was stored in."""

    lon: float
    lat: float
    epsg: int | None


def image_center(path: str | os.PathLike[str]) -> Georeference | None:
    """The [lon, lat] of the centre of a GeoTIFF, or ``None`` when its tags do not give it
    (no GeoTIFF tags, a rotated/sheared grid, or a CRS other than WGS 84 geographic / UTM without
    pyproj installed). Raises :class:`~satclip.errors.ImageError` naming the file when its tags
    put the centre off the globe, and whatever tifffile raises for a file that is not a TIFF."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page: Any = tif.pages[0]
        tags: dict[str, Any] = dict(page.geotiff_tags or {}) if hasattr(page, "geotiff_tags") else {}
        height, width = int(page.imagelength), int(page.imagewidth)
    xy = _model_coordinates(tags, width / 2.0, height / 2.0)
    if xy is None:
        return None
    epsg = _epsg(tags)
    lonlat = to_lonlat(xy[0], xy[1], epsg)
    if lonlat is None:
        return None
    lon, lat = lonlat
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        # A wrong pixel scale or tie point: a "centre" off the globe is no location at all.
        raise ImageError(
            f"{os.fspath(path)}: its GeoTIFF tags put the image centre at lon {lon:.6g}, lat {lat:.6g} "
            f"(EPSG:{epsg}), which is not on Earth (longitude must be in [-180, 180], latitude in "
            "[-90, 90]); the file's pixel scale, tie point or transformation is wrong"
        )
    return Georeference(lon, lat, epsg)


def to_lonlat(x: float, y: float, epsg: int | None) -> tuple[float, float] | None:
    """Model coordinates in ``epsg`` -> (lon, lat) degrees, or ``None`` when it cannot be done."""
    if epsg is None:
        return None
    if epsg == 4326:
        return float(x), float(y)
    if 32601 <= epsg <= 32660 or 32701 <= epsg <= 32760:
        return utm_to_lonlat(x, y, zone=epsg % 100, north=epsg < 32700)
    try:
        from pyproj import Transformer
    except ImportError:
        return None
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(x, y)
    return float(lon), float(lat)


def utm_to_lonlat(easting: float, northing: float, *, zone: int, north: bool) -> tuple[float, float]:
    """WGS 84 UTM (metres) -> (lon, lat) in degrees (inverse transverse Mercator, Krueger series)."""
    n = _F / (2 - _F)
    big_a = _A / (1 + n) * (1 + n**2 / 4 + n**4 / 64)
    beta = (n / 2 - 2 * n**2 / 3 + 37 * n**3 / 96, n**2 / 48 + n**3 / 15, 17 * n**3 / 480)
    delta = (2 * n - 2 * n**2 / 3 - 2 * n**3, 7 * n**2 / 3 - 8 * n**3 / 5, 56 * n**3 / 15)
    xi = (northing - (0.0 if north else _N0_SOUTH)) / (_K0 * big_a)
    eta = (easting - _E0) / (_K0 * big_a)
    xi_p = xi - sum(b * math.sin(2 * j * xi) * math.cosh(2 * j * eta) for j, b in enumerate(beta, 1))
    eta_p = eta - sum(b * math.cos(2 * j * xi) * math.sinh(2 * j * eta) for j, b in enumerate(beta, 1))
    chi = math.asin(math.sin(xi_p) / math.cosh(eta_p))
    lat = chi + sum(d * math.sin(2 * j * chi) for j, d in enumerate(delta, 1))
    lon0 = math.radians(zone * 6 - 183)
    lon = lon0 + math.atan2(math.sinh(eta_p), math.cos(xi_p))
    lon_deg = (math.degrees(lon) + 180.0) % 360.0 - 180.0
    return lon_deg, math.degrees(lat)


def _model_coordinates(tags: dict[str, Any], col: float, row: float) -> tuple[float, float] | None:
    """Raster (col, row) -> model (x, y) from ModelTransformation or ModelPixelScale + ModelTiepoint."""
    matrix = tags.get("ModelTransformation")
    if matrix is not None:
        m = [float(v) for v in (matrix.ravel() if hasattr(matrix, "ravel") else matrix)]
        if len(m) != 16:
            return None
        return m[0] * col + m[1] * row + m[3], m[4] * col + m[5] * row + m[7]
    scale, tie = tags.get("ModelPixelScale"), tags.get("ModelTiepoint")
    if scale is None or tie is None or len(scale) < 2 or len(tie) < 6:
        return None
    i, j, _, x, y, _ = (float(v) for v in list(tie)[:6])
    # Pixel-is-point rasters put the tie point on a pixel centre, not its corner.
    if int(tags.get("GTRasterTypeGeoKey", 1)) == 2:
        col, row = col - 0.5, row - 0.5
    return x + (col - i) * float(scale[0]), y - (row - j) * float(scale[1])


def _epsg(tags: dict[str, Any]) -> int | None:
    for key in ("ProjectedCSTypeGeoKey", "GeographicTypeGeoKey"):
        value = tags.get(key)
        if value is not None:
            try:
                code = int(value)
            except (TypeError, ValueError):
                continue
            if 1024 <= code < 32767:  # 32767 is "user-defined": no code to convert with
                return code
    return None


__all__ = ["EARTH_RADIUS_KM", "Georeference", "great_circle_km", "image_center", "to_lonlat", "utm_to_lonlat"]
