"""Compiled kernels: ``cpu`` (Numba prange) and ``cuda`` (numba.cuda), thin loops around
:mod:`nbsim.physics`; ``carryover`` holds the c-parity phi=0 carryover helpers."""
