"""Hugging Face Hub conventions for satclip's models: ``save_pretrained``, ``from_pretrained``,
``push_to_hub``.

:class:`PretrainedMixin` gives :class:`~satclip.models.location.LocationEncoder` and the
two-tower :class:`~satclip.models.satclip.SatCLIP` these three methods. A model folder (and a
Hub repository pushed from one) holds

* ``model.safetensors`` - the weights, a :func:`satclip.save` file: self-contained (its metadata
  has the architecture), so ``satclip.load("owner/repo")``, ``satclip.load("folder")`` and
  ``hf://owner/repo/model.safetensors`` read it with no other file;
* ``config.json`` - which model it is and its architecture, what ``from_pretrained`` rebuilds the
  model from and checks the weights against (``satclip_model``, ``format_version``,
  ``location_encoder`` and, for a full model, ``image_encoder``, under the weights' own keys);
* ``README.md`` - a generated model card: architecture, L, hidden size, training data and
  metrics where given, the SatCLIP paper's citation and the license.

The mixin is built on ``huggingface_hub``'s primitives (``HfApi.create_repo``,
``HfApi.upload_folder``, ``ModelCardData``; downloads go through :mod:`satclip.io.hub`, with its
offline handling and cache verification) rather than on ``huggingface_hub.PyTorchModelHubMixin``:
that mixin records a model's ``__init__`` arguments as its config, and these models are built
from modules (``LocationEncoder(posenc, nnet)``, ``SatCLIP(image, location)``), not from JSON
values, so it would have to change their constructors to record anything; it also loads weights
with ``strict=False`` and none of satclip's checks. Here the config comes from the built model
itself, and loading is :mod:`satclip.io.checkpoint`'s, with every check of :func:`satclip.load`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from satclip.errors import CheckpointError, OutputExistsError, first_line
from satclip.io.hub import PRETRAINED_CONFIG, PRETRAINED_WEIGHTS, offline_requested

#: The generated model card's file name (the Hub shows it as the repository's page).
MODEL_CARD = "README.md"
#: Every file ``save_pretrained`` writes.
PRETRAINED_FILES = (PRETRAINED_WEIGHTS, PRETRAINED_CONFIG, MODEL_CARD)

_BIBTEX = """@article{klemmer2023satclip,
  title   = {{SatCLIP}: Global, General-Purpose Location Embeddings with Satellite Imagery},
  author  = {Klemmer, Konstantin and Rolf, Esther and Robinson, Caleb and Mackey, Lester and Ru{\\ss}wurm, Marc},
  journal = {arXiv preprint arXiv:2311.17179},
  year    = {2023},
  url     = {https://arxiv.org/abs/2311.17179}
}"""

M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for satclip's models (see the
    module doc for the folder layout)."""

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        overwrite: bool = False,
        training_data: str | None = None,
        metrics: Mapping[str, Any] | None = None,
        license: str = "mit",
        description: str | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """Writes ``model.safetensors``, ``config.json`` and a ``README.md`` model card into
        ``save_directory`` (created if needed) and returns it.

        ``training_data`` (free text, e.g. ``"S2-100K"``), ``metrics`` (name -> value) and
        ``description`` go into the model card, as does ``license`` (a Hub license identifier;
        the SatCLIP paper's released weights are MIT). ``repo_id`` names the repository in the
        card's usage example. None of the three files is replaced without ``overwrite=True``
        (:class:`~satclip.errors.OutputExistsError` names those already there).
        """
        from satclip.io import checkpoint
        from satclip.io.publish import publish

        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise OutputExistsError(f"{directory} exists and is not a directory")
        taken = [name for name in PRETRAINED_FILES if (directory / name).exists()]
        if taken and not overwrite:
            raise OutputExistsError(
                f"{directory} already holds {', '.join(taken)}; pass overwrite=True to replace them"
            )
        config = checkpoint.pretrained_config(self)  # type: ignore[arg-type]  # the mixin's models
        card = model_card(
            config,
            parameters=_parameter_count(self),
            training_data=training_data,
            metrics=metrics,
            license=license,
            description=description,
            repo_id=repo_id,
        )
        directory.mkdir(parents=True, exist_ok=True)
        checkpoint.save(self, directory / PRETRAINED_WEIGHTS, overwrite=overwrite)  # type: ignore[arg-type]
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        publish(directory / PRETRAINED_CONFIG, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
        publish(directory / MODEL_CARD, lambda tmp: tmp.write_text(card, encoding="utf-8"), overwrite=overwrite)
        return directory

    @classmethod
    def from_pretrained(
        cls: type[M],
        model: str | Path,
        *,
        device: Any = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> M:
        """The model saved in a folder or Hub repository by :meth:`save_pretrained` (checked
        against its ``config.json``), in eval mode; also any name :func:`satclip.load` takes
        (a released model: ``"resnet50-l40"``, ``"microsoft/SatCLIP-ResNet50-L40"``).

        ``device``, ``cache_dir``, ``local_files_only`` and ``revision`` as for
        :func:`satclip.load`; a location encoder also takes ``dtype`` (default float64). A
        :class:`~satclip.models.location.LocationEncoder` can be read from a full model's folder
        (its location half); a full model needs a folder or file with both halves.
        """
        from satclip.io import checkpoint

        loaded: M = checkpoint.load_pretrained(
            cls,
            model,
            device=device,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            revision=revision,
            **kwargs,
        )
        return loaded

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool = False,
        commit_message: str = "Upload a satclip model",
        **card: Any,
    ) -> Any:
        """Creates ``repo_id`` on the Hub if needed and uploads the folder :meth:`save_pretrained`
        writes (``card``: its model-card arguments) in one commit; returns the commit's info
        (its ``commit_url``). Needs network access and a Hub token with write access."""
        if offline_requested():
            raise CheckpointError(f"cannot push to {repo_id}: HF_HUB_OFFLINE is set, so the Hub is not contacted")
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory(prefix="satclip-push-") as tmp:
            folder = self.save_pretrained(Path(tmp) / "model", repo_id=repo_id, **card)
            try:
                repo = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
                return api.upload_folder(
                    repo_id=str(getattr(repo, "repo_id", repo_id)),
                    repo_type="model",
                    folder_path=folder,
                    commit_message=commit_message,
                    revision=branch,
                    create_pr=create_pr,
                )
            except Exception as err:  # huggingface_hub raises HTTP, auth and validation errors
                raise CheckpointError(
                    f"could not push to the Hub repository {repo_id}: {type(err).__name__}: {first_line(err)}"
                ) from err


def _parameter_count(model: Any) -> int | None:
    parameters = getattr(model, "parameters", None)
    return sum(p.numel() for p in parameters()) if callable(parameters) else None


def model_card(
    config: Mapping[str, Any],
    *,
    parameters: int | None = None,
    training_data: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    license: str = "mit",
    description: str | None = None,
    repo_id: str | None = None,
) -> str:
    """The ``README.md`` of a model folder: Hub metadata (YAML front matter) and a card."""
    from huggingface_hub import ModelCardData

    full = config.get("satclip_model") == "SatCLIP"
    location = config["location_encoder"]
    image = config.get("image_encoder")
    tags = ["satclip", "geospatial", "location-encoder", "spherical-harmonics", "siren"]
    if full:
        tags += ["sentinel-2", "remote-sensing", "contrastive-learning"]
    data = ModelCardData(license=license, library_name="satclip", tags=tags)
    kind = "SatCLIP model (image and location encoders)" if full else "SatCLIP location encoder"
    name = repo_id or kind
    load_call = "satclip.models.satclip.SatCLIP.from_pretrained" if full else "satclip.load"
    target = repo_id or "path/to/this/folder"
    rows = [
        ("Location encoder", f"spherical harmonics (basis `{location['basis']}`) + SIREN network"),
        ("Legendre degrees L", str(location["legendre_polys"])),
        ("SH features (L²)", str(location["legendre_polys"] ** 2)),
        ("Hidden size (capacity)", str(location["capacity"])),
        ("Hidden layers", str(location["num_hidden_layers"])),
        ("Embedding dimension", str(location["embed_dim"])),
    ]
    if isinstance(image, Mapping):
        rows += [
            ("Image encoder", f"`{image['architecture']}` (timm) over {image['in_channels']} Sentinel-2 bands"),
            ("Image size", f"{image['image_size']} px"),
            ("Image embedding dimension", str(image["embed_dim"])),
        ]
    if parameters is not None:
        rows.append(("Parameters", f"{parameters:,}"))
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {name}",
        "",
        description or f"A {kind} saved with the `satclip` Python package's `save_pretrained`.",
        "",
        "```python",
        "import satclip",
        "",
        f"model = {load_call}({target!r})",
    ]
    if not full:
        lines.append("embeddings = satclip.encode([[8.55, 47.37]], model=model)  # [lon, lat] -> (1, D)")
    lines += ["```", "", "## Architecture", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", "## Training data", "", training_data or "Not recorded when this model was saved.", ""]
    lines += ["## Metrics", ""]
    if metrics:
        lines += ["| Metric | Value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in metrics.items()]
    else:
        lines.append("None recorded when this model was saved.")
    lines += [
        "",
        "## Citation",
        "",
        "The SatCLIP paper, whose models these are:",
        "",
        "```bibtex",
        _BIBTEX,
        "```",
        "",
        "## License",
        "",
        f"`{license}`",
        "",
    ]
    return "\n".join(lines)


__all__ = ["MODEL_CARD", "PRETRAINED_FILES", "PretrainedMixin", "model_card"]
