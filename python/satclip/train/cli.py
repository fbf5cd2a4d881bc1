"""``satclip-train``: the Lightning command line for training SatCLIP models.

    satclip-train fit --config training/configs/resnet18-l10.yaml --data.data_dir /data/s2-100k

Everything LightningCLI offers works (``fit``/``validate``, ``--ckpt_path`` to resume,
``--print_config``, ``--trainer.*`` overrides). Two values are shared between model and data
and set once, on the model: ``model.legendre_polys`` (the data loaders compute the SH
features) and ``model.image_size`` (the crop size).

A bad configuration (unknown encoder, L < 1, missing data directory, empty index...) stops
here with a one-line message and exit status 2, before a trainer or worker is started.
"""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from satclip.errors import SatclipError
from satclip.train.datamodule import S2DataModule
from satclip.train.module import SatCLIPModule


class SatCLIPCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("model.legendre_polys", "data.legendre_polys")
        parser.link_arguments("model.image_size", "data.crop_size")


def build_cli(args: list[str] | None = None, run: bool = True) -> SatCLIPCLI:
    """The CLI object (for programmatic use and tests); ``args`` as on the command line."""
    return SatCLIPCLI(
        model_class=SatCLIPModule,
        datamodule_class=S2DataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    try:
        build_cli(args)
    except SatclipError as err:
        print(f"satclip-train: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
