"""An independent re-implementation of the ORIGINAL SatCLIP location-encoder code path.

Used to check that satclip gives the embeddings the original code gives. It follows the
original's recipe, not its text:

* every SH function Y_l^m is built with sympy exactly as the original generator builds it
  (sympy's ``assoc_legendre``, which carries the Condon-Shortley phase, times ``(-1)^m``;
  ``sqrt((2l+1)/4 * pi)`` on m = 0, where ``(2l+1)/4`` is a Python float division), turned
  into floats with ``.evalf()`` and printed with ``str()`` - the printed source is what the
  original ships and runs, so that is what is evaluated here, with torch's ``cos``/``sin``
  on float64 tensors (``phi = deg2rad(lon + 180)``, ``theta = deg2rad(lat + 90)``);
* the SIREN forward in float64 from a state_dict: ``sin(w0 * (x W^T + b))`` with w0 = 30 on
  the first hidden layer and 1 after, then a linear output layer.

Generating the sympy expressions takes ~0.3 s for L = 10 and tens of seconds for L = 40, so
they are cached per process and, when ``cache_dir`` is given, as JSON files on disk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import torch

SHFunction = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | float"]


def ylm_expression(l: int, m: int):  # -> sympy.Expr
    """The real SH of degree l, order m as the original generator defines it (symbolic)."""
    from sympy import Abs, Symbol, assoc_legendre, cos, factorial, pi, sin, sqrt

    theta, phi = Symbol("theta"), Symbol("phi")
    if m == 0:
        # (2l+1)/4 is evaluated by Python as a float before sympy sees it, as in the original.
        return sqrt((2 * l + 1) / 4 * pi) * assoc_legendre(l, 0, cos(theta))
    am = abs(m)
    normalised = sqrt((2 * l + 1) / (4 * pi) * (factorial(l - am) / factorial(l + am))) * assoc_legendre(
        l, Abs(m), cos(theta)
    )
    trig = sin(am * phi) if m < 0 else cos(am * phi)
    return (-1) ** m * sqrt(2) * normalised * trig


@cache
def _degree_sources_in_memory(l: int) -> tuple[str, ...]:
    return tuple(str(ylm_expression(l, m).evalf()) for m in range(-l, l + 1))


def degree_sources(l: int, cache_dir: Path | None = None) -> tuple[str, ...]:
    """Printed float expressions of Y_l^m for m = -l..l (the original's generated source)."""
    if cache_dir is None:
        return _degree_sources_in_memory(l)
    import sympy

    cache_file = Path(cache_dir) / f"sympy-{sympy.__version__}" / f"ylm_l{l}.json"
    if cache_file.is_file():
        sources = json.loads(cache_file.read_text())
        if isinstance(sources, list) and len(sources) == 2 * l + 1:
            return tuple(sources)
    sources = _degree_sources_in_memory(l)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(sources)))
    tmp.replace(cache_file)
    return sources


@cache
def _compile(source: str) -> SHFunction:
    # The original module imports only cos and sin from torch; anything else in an
    # expression (sqrt, pi, Abs) would fail there too, so it must fail here.
    code = compile(source, "<ylm>", "eval")

    def ylm(theta: torch.Tensor, phi: torch.Tensor) -> torch.Tensor | float:
        return eval(code, {"__builtins__": {}, "cos": torch.cos, "sin": torch.sin}, {"theta": theta, "phi": phi})

    return ylm


def original_features(lonlat: torch.Tensor, L: int, cache_dir: Path | None = None) -> torch.Tensor:
    """(N, L*L) SH features as the original ``SphericalHarmonics(harmonics_calculation='analytic')``."""
    lonlat = lonlat.to(torch.float64)
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    phi = torch.deg2rad(lon + 180)
    theta = torch.deg2rad(lat + 90)
    columns = []
    for l in range(L):
        for source in degree_sources(l, cache_dir):
            y = _compile(source)(theta, phi)
            if isinstance(y, float):  # constant functions (l = 0) evaluate to a Python float
                y = y * torch.ones_like(phi)
            columns.append(y)
    return torch.stack(columns, dim=-1)


def original_siren_forward(
    features: torch.Tensor, state_dict: Mapping[str, torch.Tensor], prefix: str = "nnet."
) -> torch.Tensor:
    """The original SirenNet forward in float64 from ``{prefix}layers.{i}.*``/``{prefix}last_layer.*``."""
    x = features.to(torch.float64)
    i = 0
    while f"{prefix}layers.{i}.weight" in state_dict:
        w0 = 30.0 if i == 0 else 1.0
        weight = state_dict[f"{prefix}layers.{i}.weight"].to(torch.float64)
        bias = state_dict[f"{prefix}layers.{i}.bias"].to(torch.float64)
        x = torch.sin(w0 * (x @ weight.T + bias))
        i += 1
    if i == 0:
        raise KeyError(f"no {prefix}layers.0.weight in the state_dict")
    weight = state_dict[f"{prefix}last_layer.weight"].to(torch.float64)
    bias = state_dict[f"{prefix}last_layer.bias"].to(torch.float64)
    return x @ weight.T + bias


def original_embeddings(
    lonlat: torch.Tensor,
    state_dict: Mapping[str, torch.Tensor],
    L: int,
    prefix: str = "model.location.nnet.",
    cache_dir: Path | None = None,
) -> torch.Tensor:
    """Embeddings the original code path gives for ``lonlat`` from a checkpoint's state_dict."""
    return original_siren_forward(original_features(lonlat, L, cache_dir), state_dict, prefix)


def released_init_state_dict(
    legendre_polys: int,
    embed_dim: int = 256,
    capacity: int = 256,
    num_hidden_layers: int = 2,
    seed: int = 0,
    prefix: str = "nnet.",
) -> dict[str, torch.Tensor]:
    """Float64 SIREN weights drawn like the original initialisation (uniform; first layer
    +-1/dim_in, later ones +-sqrt(6/dim_in) with w0 = 1), independently of satclip.models.location."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}

    def uniform(shape: tuple[int, ...], bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound

    dim_in = legendre_polys**2
    for i in range(num_hidden_layers):
        bound = 1 / dim_in if i == 0 else math.sqrt(6 / dim_in)
        out[f"{prefix}layers.{i}.weight"] = uniform((capacity, dim_in), bound)
        out[f"{prefix}layers.{i}.bias"] = uniform((capacity,), bound)
        dim_in = capacity
    bound = math.sqrt(6 / dim_in)
    out[f"{prefix}last_layer.weight"] = uniform((embed_dim, dim_in), bound)
    out[f"{prefix}last_layer.bias"] = uniform((embed_dim,), bound)
    return out
