"""The ``satclip`` command line: ``main`` parses the arguments and dispatches to one module per
command group (``main`` itself: encode, convert, models; ``images``: embed-images, locate;
``downstream``: probe, map)."""

from satclip._lazy import submodules

__getattr__ = submodules(__name__)
