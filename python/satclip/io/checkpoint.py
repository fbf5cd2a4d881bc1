"""Reading and writing SatCLIP location encoders: the file formats.

Two file formats are read:

* the released PyTorch Lightning checkpoints (``.ckpt``, also any other suffix torch can load):
  a pickle with a ``state_dict`` (location weights under ``model.location.nnet.*``) and
  ``hyper_parameters``. They are unpickled with ``torch.load(weights_only=True)``, so a file
  that would need arbitrary code to unpickle is refused instead of run;
* satclip's own ``.safetensors`` files written by :func:`save`: the location weights plus a
  small JSON config in the file's metadata. Loading them involves no pickle at all.

Every file is checked before its weights are used: zip CRCs, tensor shapes against the
hyper-parameters, storage sizes, finiteness and a bound on the parameter count.

Which file a model name means (short names, released Hub repositories, ``hf://`` files, paths)
is :mod:`satclip.models.registry`'s job; its public names are re-exported here as before.

dtype: :func:`load` returns float64 weights by default - the released checkpoints store
float64 and the original code runs the location encoder in float64, so a loaded model is
bit-for-bit the released one. :func:`satclip.encode` makes its own float32 copy when asked
for float32 output.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from satclip.embed.dtypes import check_float_dtype
from satclip.errors import CheckpointError, DeviceError, OutputExistsError, first_line
from satclip.harmonics.values import MAX_DEGREES
from satclip.models.location import LocationEncoder, SirenNet, SphericalHarmonics, build_location_encoder

# Re-exported: these were defined here before the registry had its own module.
from satclip.models.registry import (
    MODELS,
    ModelSource,
    PathLike,
    ReleasedModel,
    parse_source,
    released_model,
    resolve,
    source_path,
)

#: The architecture's hyper-parameters as the released checkpoints (and satclip's safetensors
#: metadata) name them; ``legendre_polys`` is the file format's name for ``L``.
CONFIG_KEYS = ("legendre_polys", "embed_dim", "capacity", "num_hidden_layers")


@dataclass(frozen=True)
class EncoderConfig:
    """The hyper-parameters that define a location encoder's architecture.

    ``L`` is the number of Legendre degrees; the files store it under the released checkpoints'
    hyper-parameter name ``legendre_polys`` (:data:`CONFIG_KEYS`).
    """

    L: int
    embed_dim: int = 256
    capacity: int = 256
    num_hidden_layers: int = 2
    basis: str = "satclip"

    def __post_init__(self) -> None:
        for name, low, high in (
            ("L", 1, MAX_DEGREES),
            ("embed_dim", 1, 1 << 20),
            ("capacity", 1, 1 << 20),
            ("num_hidden_layers", 1, 1024),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                # Named as the file names it: a bad value almost always comes from a checkpoint.
                label = "legendre_polys (L)" if name == "L" else name
                raise CheckpointError(f"hyper-parameter {label} must be an integer in [{low}, {high}], got {value!r}")
        if self.basis not in ("satclip", "orthonormal"):
            raise CheckpointError(f'hyper-parameter basis must be "satclip" or "orthonormal", got {self.basis!r}')

    @classmethod
    def of(cls, model: LocationEncoder) -> EncoderConfig:
        """The config of a model built by :func:`~satclip.models.location.build_location_encoder`."""
        if (
            not isinstance(model, LocationEncoder)
            or not isinstance(model.posenc, SphericalHarmonics)
            or not isinstance(model.nnet, SirenNet)
        ):
            raise CheckpointError(
                f"only LocationEncoder(SphericalHarmonics, SirenNet) models can be saved, got {type(model).__name__}"
            )
        return cls(
            L=model.posenc.L,
            embed_dim=model.nnet.last_layer.dim_out,
            capacity=model.nnet.dim_hidden,
            num_hidden_layers=model.nnet.num_layers,
            basis=model.posenc.basis,
        )

    def build(self) -> LocationEncoder:
        return build_location_encoder(
            self.L,
            self.embed_dim,
            self.capacity,
            self.num_hidden_layers,
            self.basis,  # type: ignore[arg-type]
        )

    @classmethod
    def from_hyper_parameters(cls, hparams: Mapping[str, Any], basis: str = "satclip") -> EncoderConfig:
        """The config from file hyper-parameters (the :data:`CONFIG_KEYS`, all present)."""
        return cls(
            L=hparams["legendre_polys"],
            embed_dim=hparams["embed_dim"],
            capacity=hparams["capacity"],
            num_hidden_layers=hparams["num_hidden_layers"],
            basis=basis,
        )

    def to_hyper_parameters(self) -> dict[str, Any]:
        """The config under the file's key names (``satclip_config`` of :func:`save`)."""
        return {
            "legendre_polys": self.L,
            "embed_dim": self.embed_dim,
            "capacity": self.capacity,
            "num_hidden_layers": self.num_hidden_layers,
            "basis": self.basis,
        }

    @property
    def legendre_polys(self) -> int:
        """Deprecated name of :attr:`L`."""
        warnings.warn("EncoderConfig.legendre_polys is deprecated: use EncoderConfig.L", DeprecationWarning, 2)
        return self.L

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Names (relative to ``nnet.``) and shapes of every tensor of the network."""
        shapes: dict[str, tuple[int, ...]] = {}
        dim_in = self.L**2
        for i in range(self.num_hidden_layers):
            shapes[f"layers.{i}.weight"] = (self.capacity, dim_in)
            shapes[f"layers.{i}.bias"] = (self.capacity,)
            dim_in = self.capacity
        shapes["last_layer.weight"] = (self.embed_dim, self.capacity)
        shapes["last_layer.bias"] = (self.embed_dim,)
        return shapes


# ----------------------------------------------------------------------------------------
# Public API


def load(
    model: PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str = torch.float64,
    cache_dir: PathLike | None = None,
    local_files_only: bool | None = None,
    revision: str | None = None,
) -> LocationEncoder:
    """Loads a SatCLIP location encoder, in eval mode.

    Parameters
    ----------
    model:
        A short name from :data:`MODELS` (``"resnet50-l40"``), a released model's Hub
        repository (``"microsoft/SatCLIP-ResNet50-L40"``), a Hub file
        (``"hf://owner/repo/file.safetensors"``), or a local ``.ckpt``/``.safetensors`` path.
    device:
        Where the weights go (default: CPU).
    dtype:
        ``torch.float64`` (default, as released) or ``torch.float32``.
    cache_dir, local_files_only, revision:
        Passed to ``huggingface_hub.hf_hub_download`` for Hub models. ``local_files_only=None``
        means "only if the ``HF_HUB_OFFLINE`` environment variable is set" (read at call time).
        ``revision`` overrides the registry's pinned revision.

    Raises
    ------
    CheckpointError
        The name is unknown, the file is missing, truncated, unsafe to unpickle, or does not
        describe a spherical-harmonics + SIREN location encoder (the message says which
        hyper-parameter or tensor is wrong).
    """
    dtype = check_float_dtype(dtype)
    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        # Checked first, before any download; the same message as encode(device="cuda").
        raise DeviceError(f"device {device!r} was requested but CUDA is not available here")
    source = parse_source(model, revision=revision)
    path = source_path(source, cache_dir=cache_dir, local_files_only=local_files_only)
    tensors: Mapping[str, Any]
    if path.suffix.lower() == ".safetensors":
        config, tensors = _read_safetensors(path)
        prefix = "nnet."
    else:
        config, tensors, prefix = _read_lightning_checkpoint(path)
    released = released_model(source)
    if released is not None and config.L != released.L:
        # A damaged or substituted cache entry: better to stop than to encode with the wrong model.
        raise CheckpointError(
            f"{path} says legendre_polys={config.L}, but {released.repo_id} is an "
            f"L={released.L} model; the cached file is not the released one"
        )
    encoder = _build_from_tensors(config, tensors, prefix, source=str(path))
    return encoder.to(device=torch.device(device) if device is not None else None, dtype=dtype).eval()


def save(model: LocationEncoder, path: PathLike, *, overwrite: bool = False, image_encoder: Any = None) -> Path:
    """Writes ``model``'s weights and config to a ``.safetensors`` file that :func:`load` reads.

    The architecture (``legendre_polys``, ``embed_dim``, ``capacity``, ``num_hidden_layers``,
    ``basis``) is stored as JSON in the file's metadata under ``"satclip_config"``, so the
    file is self-contained and loads without pickle. Weights keep their dtype. An existing
    file is only replaced with ``overwrite=True``. ``image_encoder`` (a
    :class:`satclip.models.image.ImageEncoder`) adds the image half (tensors ``visual.*``,
    config ``"satclip_image_config"``), which :func:`satclip.load_image_encoder` reads back.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"satclip saves .safetensors files; got the path {str(path)!r}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True to replace it")
    config = EncoderConfig.of(model)
    tensors = {
        name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items() if name.startswith("nnet.")
    }
    metadata = {"format": "pt", "satclip_config": json.dumps(config.to_hyper_parameters(), sort_keys=True)}
    if image_encoder is not None:
        from satclip.models.image import safetensors_entries

        image_tensors, image_metadata = safetensors_entries(image_encoder)
        tensors.update(image_tensors)
        metadata.update(image_metadata)
    # publish: an interrupted save never leaves a torn file under the final name, and without
    # overwrite a file that appeared while saving is not clobbered either.
    from satclip.io.publish import publish

    return publish(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata), overwrite=overwrite)


# ----------------------------------------------------------------------------------------
# Reading


#: Where the location encoder's network lives in a Lightning checkpoint, most specific first:
#: the released files hold it under ``model.location.nnet`` and alias it as ``model.nnet``.
_NNET_PREFIXES = ("model.location.nnet.", "location.nnet.", "model.nnet.", "nnet.")


def _read_safetensors(path: Path) -> tuple[EncoderConfig, dict[str, Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as err:  # SafetensorError, OSError: truncated or not a safetensors file
        raise CheckpointError(
            f"{path} is not a readable safetensors file (truncated or corrupt?): {first_line(err)}"
        ) from err
    if "satclip_config" not in metadata:
        raise CheckpointError(
            f"{path} has no satclip_config metadata: it was not written by satclip.save, so its architecture is unknown"
        )
    try:
        raw = json.loads(metadata["satclip_config"])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: satclip_config metadata is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: satclip_config metadata must be a JSON object")
    missing = [k for k in (*CONFIG_KEYS, "basis") if k not in raw]
    if missing:
        raise CheckpointError(f"{path}: satclip_config lacks {', '.join(missing)}")
    return EncoderConfig.from_hyper_parameters(raw, basis=raw["basis"]), tensors


def _read_lightning_checkpoint(path: Path) -> tuple[EncoderConfig, Mapping[str, Any], str]:
    checkpoint = _torch_load_safely(path)
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a SatCLIP Lightning checkpoint: it has no 'state_dict'")
    state_dict = checkpoint["state_dict"]
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a mapping")
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"{path} has no 'hyper_parameters', so the location encoder's architecture is unknown")
    config = _config_from_hyper_parameters(hparams, source=str(path))
    prefix = next((p for p in _NNET_PREFIXES if f"{p}layers.0.weight" in state_dict), None)
    if prefix is None:
        raise CheckpointError(
            f"{path} holds no location-encoder weights: none of "
            f"{', '.join(p + 'layers.0.weight' for p in _NNET_PREFIXES)} is in its state_dict"
        )
    return config, state_dict, prefix


def _torch_load_safely(path: Path) -> Any:
    is_zip = _check_container(path)
    try:
        # mmap: a released file is mostly vision weights; map it instead of reading it all. It also
        # means no tensor is materialised before _build_from_tensors has checked its size.
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        message = str(err)
        detail = re.search(r"GLOBAL ([\w.]+)", message)
        if detail is not None or "unsupported global" in message.lower():
            what = f" (it references {detail.group(1)})" if detail else ""
            raise CheckpointError(
                f"refusing to load {path}: unpickling it would need arbitrary code{what}. "
                "satclip only unpickles plain tensors and containers (torch.load weights_only=True); "
                "a genuine SatCLIP checkpoint needs nothing else"
            ) from err
        raise CheckpointError(f"{path} is not a checkpoint (corrupt?): {first_line(err)}") from err
    except Exception as err:  # torch raises RuntimeError, EOFError, KeyError... for damaged files
        raise CheckpointError(
            f"{path} could not be read as a PyTorch checkpoint (truncated or corrupt?): {first_line(err)}"
        ) from err


#: How torch's legacy (pre-1.6, non-zip) files start: a pickle (protocol 2+) of a magic number.
_PICKLE_START = b"\x80"


#: Zip checkpoints whose CRC-32s this process has checked, by (device, inode, size, mtime in ns):
#: the location and image encoders of one file (``satclip locate``), or repeated loads, read a
#: released file (100s of MB) through zlib once, and a file that is rewritten is checked again.
_CRC_CHECKED: set[tuple[int, int, int, int]] = set()


def _check_container(path: Path) -> bool:
    """Whether ``path`` is a zip checkpoint, after checking every record's CRC-32 (torch.load does
    not, so flipped bytes would load as wrong weights; once per file version and process, see
    ``_CRC_CHECKED``). Raises CheckpointError naming a damaged record, or saying the file is no
    checkpoint at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            st = os.fstat(f.fileno())
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if version in _CRC_CHECKED:
        return True
    if not zipfile.is_zipfile(path):
        if not head:
            raise CheckpointError(f"{path} is empty (truncated or corrupt?)")
        if head.startswith(b"PK"):
            raise CheckpointError(f"{path} is a zip archive without its end (truncated or corrupt?)")
        if not head.startswith(_PICKLE_START):
            raise CheckpointError(
                f"{path} is not a checkpoint: it is neither a PyTorch zip archive nor a pickle "
                f"(it starts with the bytes {head!r})"
            )
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as err:
        raise CheckpointError(f"{path} is a damaged checkpoint (truncated or corrupt zip archive): {err}") from None
    if bad is not None:
        raise CheckpointError(
            f"{path} is a damaged checkpoint: the CRC-32 of its record {bad!r} does not match its bytes "
            "(a corrupt download or disk?); download or copy it again"
        )
    _CRC_CHECKED.add(version)
    return True


def _config_from_hyper_parameters(hparams: Mapping[str, Any], *, source: str) -> EncoderConfig:
    """The architecture from a Lightning checkpoint's hyper-parameters (unknown keys ignored)."""
    le_type = hparams.get("le_type")
    if le_type != "sphericalharmonics":
        raise CheckpointError(
            f"{source}: location encoder type le_type={le_type!r} is not supported; "
            "satclip implements le_type='sphericalharmonics'"
        )
    pe_type = hparams.get("pe_type")
    if pe_type != "siren":
        raise CheckpointError(
            f"{source}: network type pe_type={pe_type!r} is not supported; satclip implements pe_type='siren'"
        )
    # "analytic" is the basis satclip computes (exactly); the original's "closed-form" variant is a
    # different basis (Condon-Shortley phase, no factor pi), so its weights would be meaningless here.
    calculation = hparams.get("harmonics_calculation", "analytic")
    if calculation != "analytic":
        raise CheckpointError(
            f"{source}: harmonics_calculation={calculation!r} is not supported; "
            "satclip computes the 'analytic' basis the released models use"
        )
    missing = [k for k in CONFIG_KEYS if k not in hparams]
    if missing:
        raise CheckpointError(f"{source}: hyper_parameters lack {', '.join(missing)}")
    try:
        return EncoderConfig.from_hyper_parameters(hparams)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None


#: The largest location encoder satclip builds, in parameters (2 GiB of float64). The released
#: L=40 models have 0.5 M; this bounds what a crafted header can make load allocate.
MAX_PARAMETERS = 1 << 28


def _check_storage(value: Tensor, key: str, source: str) -> None:
    """Refuses tensors whose elements are not all backed by distinct bytes of the file (e.g.
    stride-0 "expanded" tensors): materialising them would allocate far more than the file holds."""
    needed = value.numel() * value.element_size()
    strides_ok = all(stride >= 1 for stride, size in zip(value.stride(), value.shape, strict=True) if size > 1)
    held = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
    if not strides_ok or held < needed or not value.is_contiguous():
        raise CheckpointError(
            f"{source}: tensor {key} of shape {tuple(value.shape)} needs {needed} bytes but its storage holds "
            f"{max(held, 0)} (strides {value.stride()}): a crafted or damaged checkpoint"
        )


def _build_from_tensors(
    config: EncoderConfig, tensors: Mapping[str, Any], prefix: str, *, source: str
) -> LocationEncoder:
    """A float64 encoder with the checkpoint's weights, after checking every tensor."""
    expected = config.expected_shapes()
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise CheckpointError(
            f"{source}: the hyper-parameters (legendre_polys={config.L}, capacity={config.capacity}, "
            f"num_hidden_layers={config.num_hidden_layers}, embed_dim={config.embed_dim}) describe "
            f"{parameters:,} parameters; satclip builds at most {MAX_PARAMETERS:,}"
        )
    state: dict[str, Tensor] = {}
    for name, shape in expected.items():
        key = prefix + name
        if key not in tensors:
            raise CheckpointError(f"{source}: tensor {key} is missing (expected shape {tuple(shape)})")
        value = tensors[key]
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(value.shape)}, expected {shape} "
                f"(from legendre_polys={config.L}, capacity={config.capacity}, "
                f"embed_dim={config.embed_dim})"
            )
        if not value.is_floating_point():
            raise CheckpointError(f"{source}: tensor {key} has dtype {value.dtype}, expected floating point")
        _check_storage(value, key, source)
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source}: tensor {key} contains NaN or infinite values")
        state["nnet." + name] = value.to(torch.float64)
    extra = sorted(k for k in tensors if k.startswith(prefix) and k[len(prefix) :] not in expected)
    if extra:
        raise CheckpointError(
            f"{source}: unexpected tensor {extra[0]} (hyper_parameters say num_hidden_layers={config.num_hidden_layers})"
        )
    encoder = config.build().double()
    encoder.load_state_dict(state, strict=True)
    return encoder


__all__ = ["MODELS", "EncoderConfig", "ModelSource", "ReleasedModel", "load", "parse_source", "resolve", "save"]
