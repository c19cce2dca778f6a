"""Unit conversions exactly as nanoBragg.c performs them (so phi == 0.0 tests agree)."""
M_1_PI = 0.318309886183790671537767526745028724
RTD = 180.0 * M_1_PI          # degrees per radian, C's expression
R_E_SQR = 7.94079248018965e-30  # Thomson cross section, m^2
AVOGADRO = 6.02214179e23
DEFAULT_FLUENCE = 125932015286227086360700780544.0


def deg(x: float) -> float:
    """Degrees to radians, as C divides by RTD."""
    return float(x) / RTD
