"""Entry point for training from a source checkout: the same command as ``satclip-train``.

    python training/train.py fit --config training/configs/tiny.yaml --data.data_dir DIR

The implementation lives in ``satclip.train`` (installed with the package, so that the
``satclip-train`` console script works anywhere); this file only calls it.
"""

from satclip.train.cli import main

if __name__ == "__main__":
    main()
