"""Training SatCLIP models (image encoder + location encoder, contrastive loss) with Lightning.

Needs the ``train`` extra: ``pip install 'satclip[train]'``. The pieces, one module each:

- :mod:`satclip.train.s2data`: reading the S2-100K layout (``index.csv`` + ``images/*.tif``);
- :mod:`satclip.train.augment`: the image augmentations and coordinate jitter;
- :mod:`satclip.train.datamodule`: the ``LightningDataModule`` (split, loaders, skipped-file report);
- :mod:`satclip.train.encoders`: timm image encoders with 13 input channels;
- :mod:`satclip.train.loss`: the symmetric CLIP loss, all-gathered across ranks under DDP;
- :mod:`satclip.train.module`: the ``SatCLIP`` model and its ``LightningModule``;
- :mod:`satclip.train.cli`: the ``satclip-train`` command (a ``LightningCLI``).
"""
