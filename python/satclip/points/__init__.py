"""Points: every kind of input satclip accepts, turned into validated (N, 2) float64 [lon, lat].

``arrays`` (NumPy arrays, lists), ``tensors`` (torch tensors on any device), ``columns`` (which
DataFrame columns hold lon/lat), ``geo`` (GeoPandas, xarray, H3 cells), ``inputs`` (the one entry
the encode-like functions call) and ``sphere`` (geometry on the unit sphere: lattices, unit vectors,
great-circle distances).
"""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
