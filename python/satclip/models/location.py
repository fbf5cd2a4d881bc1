"""The SatCLIP location encoder as PyTorch modules.

``LocationEncoder(posenc=SphericalHarmonics(L), nnet=SirenNet(...))`` — the same structure and
parameter names as the original code, so released ``state_dict``s load directly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from satclip.harmonics import triton_kernel as triton_harmonics
from satclip.harmonics.autograd import spherical_harmonics_autograd
from satclip.harmonics.torch_values import torch_spherical_harmonics
from satclip.harmonics.values import Basis, check_degrees, renamed_legendre_polys, spherical_harmonics
from satclip.io.pretrained import PretrainedMixin
from satclip.points.tensors import as_dense_real_tensor, lonlat_tensor_for_sh
from satclip.runtime import vml

# Before any SIREN runs: MKL's first sin in a process must not be a multi-threaded one (see satclip.runtime.vml).
vml.initialise()


class SphericalHarmonics(nn.Module):
    """Spherical-harmonics positional encoding: (N, 2) [lon, lat] degrees -> (N, L*L).

    CPU tensors are computed by the Rust core straight into the output tensor's memory (no
    copy); tensors on other devices (CUDA) are computed there by
    :func:`~satclip.harmonics.torch_values.torch_spherical_harmonics`. Either way the features are
    exact (float64 arithmetic on CPU) and the output dtype is the input's (float32 or float64;
    other inputs give float64). When ``lonlat`` requires grad (and grad mode is on) the features
    are differentiable with respect to the coordinates, per degree, through the analytic Jacobian
    (:mod:`satclip.harmonics.autograd`); otherwise no Jacobian is computed.
    """

    def __init__(self, L: int = 10, basis: Basis = "satclip", *, legendre_polys: int | None = None):
        super().__init__()
        self.L = check_degrees(renamed_legendre_polys(L, legendre_polys, "SphericalHarmonics"))
        if basis not in ("satclip", "orthonormal"):
            raise ValueError(f'basis must be "satclip" or "orthonormal", got {basis!r}')
        self.basis: Basis = basis
        self.embedding_dim = self.L * self.L

    def extra_repr(self) -> str:
        return f"L={self.L}, basis={self.basis!r}"

    def forward(self, lonlat: Tensor) -> Tensor:
        lonlat = as_dense_real_tensor(lonlat)  # sparse, float16/bfloat16, meta -> usable or DTypeError
        if lonlat.requires_grad and torch.is_grad_enabled():
            # Differentiable in lon/lat (analytic Jacobian); the path below computes none.
            return spherical_harmonics_autograd(lonlat, self.L, self.basis)
        lonlat = lonlat_tensor_for_sh(lonlat)
        if lonlat.device.type == "cpu":
            out = torch.empty(lonlat.shape[0], self.embedding_dim, dtype=lonlat.dtype)
            # .numpy() views share memory with the tensors: the core writes into `out` directly.
            spherical_harmonics(lonlat.contiguous().numpy(), self.L, basis=self.basis, out=out.numpy())
            return out
        if lonlat.dtype == torch.float32 and triton_harmonics.available(lonlat):
            return triton_harmonics.spherical_harmonics(lonlat, self.L, self.basis)  # fused, one pass
        return torch_spherical_harmonics(lonlat, self.L, self.basis)


class Sine(nn.Module):
    def __init__(self, w0: float = 1.0):
        super().__init__()
        self.w0 = w0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)

    def forward_(self, x: Tensor) -> Tensor:
        """:meth:`forward` in place (same two elementwise operations, so the same bits)."""
        if self.w0 != 1.0:  # 1 * z is z exactly: skip the pass over memory
            x.mul_(self.w0)
        return x.sin_()

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Siren(nn.Module):
    """One SIREN layer: ``activation(W x + b)``, activation ``sin(w0 * .)`` by default.

    Initialisation as in SIREN (Sitzmann et al. 2020) and the original SatCLIP code: weights and
    biases ``U(-1/dim_in, 1/dim_in)`` on the first layer, ``U(-sqrt(6/dim_in)/w0, +...)`` after.
    ``dropout=True`` applies dropout (p = 0.5) before the activation in training mode only.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        w0: float = 1.0,
        c: float = 6.0,
        is_first: bool = False,
        use_bias: bool = True,
        activation: nn.Module | None = None,
        dropout: bool = False,
    ):
        super().__init__()
        self.dim_in, self.dim_out, self.is_first, self.dropout = dim_in, dim_out, is_first, dropout
        bound = (1 / dim_in) if is_first else (math.sqrt(c / dim_in) / w0)
        self.weight = nn.Parameter(torch.empty(dim_out, dim_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(dim_out).uniform_(-bound, bound)) if use_bias else None
        self.activation = Sine(w0) if activation is None else activation

    def forward(self, x: Tensor) -> Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.dropout:
            out = F.dropout(out, training=self.training)
        return self.activation(out)

    def forward_into(self, x: Tensor, out: Tensor) -> Tensor:
        """Inference :meth:`forward` of a 2-D ``x`` written into ``out`` (no allocation).

        ``F.linear`` of a matrix with a bias *is* ``addmm(bias, x, weight.t())`` in ATen, and the
        activation runs in place (:meth:`Sine.forward_`), so the result equals ``forward(x)``
        in eval mode bit for bit; :mod:`satclip.embed.locations` relies on this for its fast path.
        """
        if self.bias is None:
            torch.mm(x, self.weight.t(), out=out)
        else:
            torch.addmm(self.bias, x, self.weight.t(), out=out)
        activation = self.activation
        if isinstance(activation, Sine):
            activation.forward_(out)
        elif not isinstance(activation, nn.Identity):
            out.copy_(activation(out))
        return out


class SirenNet(nn.Module):
    """SIREN network: ``num_layers`` sine layers (w0 = 30 on the first, 1 after), then a linear
    output layer. Parameters ``layers.{i}.weight/bias`` and ``last_layer.weight/bias`` as in the
    released checkpoints."""

    def __init__(
        self,
        dim_in: int,
        dim_hidden: int = 256,
        dim_out: int = 256,
        num_layers: int = 2,
        w0: float = 1.0,
        w0_initial: float = 30.0,
        use_bias: bool = True,
        dropout: bool = True,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"SirenNet needs at least one hidden layer, got num_layers={num_layers}")
        self.num_layers, self.dim_hidden = num_layers, dim_hidden
        self.layers = nn.ModuleList(
            Siren(
                dim_in=dim_in if i == 0 else dim_hidden,
                dim_out=dim_hidden,
                w0=w0_initial if i == 0 else w0,
                use_bias=use_bias,
                is_first=i == 0,
                dropout=dropout,
            )
            for i in range(num_layers)
        )
        self.last_layer = Siren(dim_in=dim_hidden, dim_out=dim_out, w0=w0, use_bias=use_bias, activation=nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.last_layer(x)

    def forward_into(self, x: Tensor, hidden: tuple[Tensor, Tensor], out: Tensor) -> Tensor:
        """Inference :meth:`forward` of a 2-D ``x`` using two ``(n, dim_hidden)`` scratch tensors
        and writing the result into ``out``; equal to ``forward(x)`` in eval mode (see
        :meth:`Siren.forward_into`)."""
        a, b = hidden
        for layer in self.layers:
            assert isinstance(layer, Siren)  # for the type checker: layers are built as Sirens
            x = layer.forward_into(x, a)
            a, b = b, a
        return self.last_layer.forward_into(x, out)


class LocationEncoder(nn.Module, PretrainedMixin):
    """``nnet(posenc(lonlat))``: [lon, lat] degrees (N, 2) -> embeddings (N, dim_out).

    ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` follow the Hugging Face Hub's
    conventions (:mod:`satclip.io.pretrained`)."""

    def __init__(self, posenc: SphericalHarmonics, nnet: SirenNet):
        super().__init__()
        self.posenc = posenc
        self.nnet = nnet

    @property
    def embed_dim(self) -> int:
        return self.nnet.last_layer.dim_out

    def forward(self, lonlat: Tensor) -> Tensor:
        param = next(self.nnet.parameters())
        features = self.posenc(lonlat.to(param.device))
        return self.nnet(features.to(param.dtype))


def build_location_encoder(
    L: int,
    embed_dim: int = 256,
    capacity: int = 256,
    num_hidden_layers: int = 2,
    basis: Basis = "satclip",
) -> LocationEncoder:
    """A SatCLIP location encoder with the given hyper-parameters (defaults as released)."""
    posenc = SphericalHarmonics(L, basis=basis)
    nnet = SirenNet(dim_in=posenc.embedding_dim, dim_hidden=capacity, dim_out=embed_dim, num_layers=num_hidden_layers)
    return LocationEncoder(posenc, nnet)
