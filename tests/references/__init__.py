"""Independent references the tests compare satclip against, sharing no code with it: the SH basis
by explicit Rodrigues sums in mpmath (``sh``), its derivatives by high-precision finite differences
(``sh_gradient``), and a re-implementation of the original SatCLIP code path (``original``)."""
