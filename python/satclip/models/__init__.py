"""The networks: SatCLIP's location encoder (SH + SIREN), its image encoder, the two-tower model,
the registry of released checkpoints, and other location encoders (GeoCLIP, baselines).

Nothing here imports Lightning or the CLI; training (``satclip.train``) builds on these modules.
"""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
