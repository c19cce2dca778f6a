"""The stdout summary of the ``nbsim`` command, in nanoBragg.c's words and number formats.

nanoBragg.c prints what it parsed and derived before rendering (nanoBragg.c l.1700-1800,
2033-2513) and the statistics and scales after (l.3090-3290).  The lines users grep for
are reproduced here with the same text and C's ``%g``/``%f`` formats (``-nan`` included),
from the values the engine resolved (:class:`nbsim.plan.Plan`); the first line names
nbsim instead of nanoBragg.  Lines C prints that nbsim does not reproduce: "divergence
deviation" (per divergence grid point), "solid angle subtended by detector" and C's
per-percent progress lines (nbsim's progress bar is on stderr).

Every function returns a list of lines (no trailing newlines); the CLI prints them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np

from .io.cformat import c_g
from .units import AVOGADRO, RTD

__all__ = ["preamble_lines", "printout_lines", "stats_lines", "int_lines", "pgm_lines",
           "noise_lines", "float_lines", "split_notes", "solid_angle_lines"]

_SHAPE_WORDS = {"ROUND": "ellipsoidal", "SQUARE": "parallelpiped", "GAUSS": "gaussian",
                "TOPHAT": "tophat-spot"}
# notes the engine produces that C prints on stdout (the rest go to stderr)
_STDOUT_NOTE_PREFIXES = ("random orientation misset angles",)
PIX0_NOTE = "using the detector origin given by -pix0_vector"   # spec mode, stdout


def g(x) -> str:
    """C's ``%g`` (glibc spelling of NaN and infinities)."""
    return c_g(x)


def _vec(v) -> str:
    return " ".join(g(x) for x in v)


def _f11(v) -> str:
    return " ".join("%11.8f" % x for x in v)


def split_notes(notes: Sequence[str]):
    """(stdout lines, stderr notes) from the engine's notes, duplicates dropped."""
    out, err = [], []
    for n in dict.fromkeys(notes):
        if n == PIX0_NOTE:
            continue                     # printed in place of the pivot line
        (out if n.startswith(_STDOUT_NOTE_PREFIXES) else err).append(n)
    return out, err


def preamble_lines(parsed, sim, *, noise_idum: Optional[int], version: str,
                   stdout_notes: Sequence[str] = ()) -> List[str]:
    """What C prints before the render, from the parsed flags and the resolved plan."""
    cfg = parsed.config
    out = parsed.outputs
    p = sim.plan
    d = p.detector
    c = p.crystal
    s = p.sources
    L = []
    L.append(f"nbsim {version}: nanoBragg nanocrystal diffraction simulator "
             f"(mode {cfg.mode}, {cfg.dtype}, device {cfg.device})")
    L.append(f"{d.convention.lower()} convention selected.")
    if cfg.mode == "spec" and cfg.detector.pix0_vector is not None:
        L.append(PIX0_NOTE)
    elif d.pivot == "SAMPLE":
        L.append("pivoting detector around sample")
    else:
        L.append("pivoting detector around direct beam spot")
    L.append("XDS incident beam: %s" % _vec((float(np.dot(d.beam, d.fdet)),
                                            float(np.dot(d.beam, d.sdet)),
                                            float(np.dot(d.beam, d.odet)))))
    if cfg.structure.interpolate is None:
        k = cfg.crystal
        if k.Na <= 2 or k.Nb <= 2 or k.Nc <= 2:
            L.append("auto-selected tricubic interpolation of structure factors")
        else:
            L.append("auto-selected no interpolation")
    if parsed.mat_file is not None:
        L.append(f"reading {parsed.mat_file}")
    L.extend(stdout_notes)
    L.append("Unit Cell: %s" % _vec(c.cell))
    L.append("Recp Cell: %s" % _vec(c.cell_star))
    L.append("volume = %s A^3" % g(c.V_cell))
    real = np.array([c.a0, c.b0, c.c0]) * 1e10        # rows a, b, c (Angstrom)
    recip = np.array([c.a_star, c.b_star, c.c_star])
    L.append("real-space cell vectors (Angstrom):")
    L.append("     %-10s  %-10s  %-10s" % ("a", "b", "c"))
    for i, axis in enumerate("XYZ"):
        L.append(f"{axis}: " + _f11(real[:, i]))
    L.append("reciprocal-space cell vectors (Angstrom^-1):")
    L.append("     %-10s  %-10s  %-10s" % ("a_star", "b_star", "c_star"))
    for i, axis in enumerate("XYZ"):
        L.append(f"{axis}: " + _f11(recip[:, i]))
    xa = float(np.linalg.norm(c.a0)) * c.Na
    xb = float(np.linalg.norm(c.b0)) * c.Nb
    xc = float(np.linalg.norm(c.c0)) * c.Nc
    L.append("crystal is %s x %s x %s microns" % (g(xa * 1e6), g(xb * 1e6), g(xc * 1e6)))
    given_os = cfg.sampling.oversample
    if given_os is None or given_os <= 0:
        L.append("auto-selected %d-fold oversampling" % p.oversample)
    if p.oversample < p.recommended_oversample:
        rps = cfg.beam.wavelength * d.distance / d.pixel_size
        L.append("WARNING: maximum dimension of sample is %s A" % g(c.xtalsize_max * 1e10))
        L.append("         but reciprocal pixel size is %s A" % g(rps * 1e10))
        L.append("         intensity may vary significantly across a pixel!")
        L.append("         recommend -oversample %d to work around this"
                 % p.recommended_oversample)
    molecules = c.Na * c.Nb * c.Nc
    L.append("approximate MW = %s" % g(xa * xb * xc * 1.2e6 * AVOGADRO / molecules))
    if parsed.used_dump is not None:
        L.append(f"reading Fs from {parsed.used_dump}")
    elif parsed.hkl_file is not None:
        L.append(f"counting entries in {parsed.hkl_file}")
        if cfg.structure.default_F != 0.0:
            L.append("initializing to default_F = %s:" % g(cfg.structure.default_F))
            L.append("done initializing:")
        L.append(f"re-reading {parsed.hkl_file}")
        if out.write_dump:
            L.append(f"writing dump file for next time: {out.dumpfile}")
    for t in range(d.thicksteps):
        L.append("thick%d = %s um" % (t, g(d.thickstep * t * 1e6)))
    for t, phi in enumerate(c.phi_values()):
        L.append("phi%d = %s" % (t, g(phi * RTD)))
    from_file = cfg.beam.sources is not None and len(cfg.beam.sources) > 0
    if not from_file:
        for hdiv, vdiv in s.divergence_points:
            L.append("divergence deviation: %s %s" % (g(hdiv), g(vdiv)))
        lambda0 = cfg.beam.wavelength
        for t in range(s.dispsteps):
            lam = lambda0 * (1.0 + s.dispstep * t - s.dispersion / 2.0)
            L.append("lambda%d = %.15g" % (t, lam))
    L.append("  created a total of %d sources:" % s.count)
    for i in range(s.count):
        L.append("%s   %s %s" % (_vec(s.positions[i]), g(s.weights[i]), g(s.wavelengths[i])))
    L.append("  created a total of %d mosaic domains" % c.mosaic_domains)
    L.append("  %d initialized hkls (all others =%s)" % (p.hkls, g(cfg.structure.default_F)))
    L.append("  %s xtal: %.0fx%.0fx%.0f cells" % (_SHAPE_WORDS[cfg.crystal.shape],
                                                  c.Na, c.Nb, c.Nc))
    L.append("  wave=%s meters +/- %s%% in %d steps" % (g(cfg.beam.wavelength),
                                                       g(s.dispersion * 100), s.dispsteps))
    if cfg.beam.nopolar:
        L.append("  polarization effect disabled")
    else:
        L.append("  Kahn polarization factor: %f" % cfg.beam.polarization)
    if d.curved:
        L.append("  curved detector: all pixels same distance from origin")
    if d.point_pixel:
        L.append("  pixel obliquity effect disabled")
    L.append("  incident fluence: %s photons/m^2" % g(p.fluence))
    L.append("  distance=%s detsize=%sx%s  pixel=%s meters (%dx%d pixels)"
             % (g(d.distance), g(d.detsize_f), g(d.detsize_s), g(d.pixel_size),
                d.fpixels, d.spixels))
    L.append("  sensor is %s m thick in %d layers with mu= %s"
             % (g(d.thick), d.thicksteps, g(d.mu)))
    L.append("  Xbeam=%s Ybeam=%s" % (g(d.Xbeam), g(d.Ybeam)))
    L.append("  Fbeam=%s Sbeam=%s" % (g(d.Fbeam), g(d.Sbeam)))
    L.append("  Xclose=%s Yclose=%s" % (g(d.Xclose), g(d.Yclose)))
    L.append("  Fclose=%s Sclose=%s" % (g(d.Fclose), g(d.Sclose)))
    L.append("  DIRECTION_OF_DETECTOR_X-AXIS= %s" % _vec(d.fdet))
    L.append("  DIRECTION_OF_DETECTOR_Y-AXIS= %s" % _vec(d.sdet))
    L.append("  DIRECTION_OF_DETECTOR_Z-AXIS= %s" % _vec(d.odet))
    L.append("  INCIDENT_BEAM_DIRECTION= %s" % _vec(d.beam))
    L.append("  spindle ROTATION_AXIS= %s" % _vec(d.spindle))
    L.append("  POLARIZATION_PLANE_NORMAL= %s" % _vec(np.cross(d.beam, d.polar)))
    L.append("  dials origin= %s" % _vec(d.dials_origin))
    L.append("  roi: %d < x < %d && %d < y < %d" % tuple(d.roi))
    L.append("  hdivrange=%s hdivstep=%s  radians" % (g(s.hdivrange), g(s.hdivstep)))
    L.append("  vdivrange=%s vdivstep=%s  radians" % (g(s.vdivrange), g(s.vdivstep)))
    L.append("  %d divergence steps" % (-1 if from_file else s.divsteps))
    L.append("  %d sources" % s.count)
    L.append("  %d mosaic domains over mosaic spread of %s degrees"
             % (c.mosaic_domains, g(c.mosaic_spread * RTD)))
    L.append("  %d phi steps from %s to %s degrees" % (c.phisteps, g(c.phi0 * RTD),
                                                       g((c.phi0 + c.osc) * RTD)))
    os_flags = "".join(f" +{w}" for w, on in (("thick", cfg.sampling.oversample_thick),
                                               ("polar", cfg.sampling.oversample_polar),
                                               ("omega", cfg.sampling.oversample_omega)) if on)
    L.append("  %dx%d pixel oversample steps%s" % (p.oversample, p.oversample, os_flags))
    if cfg.detector.mask is not None:
        L.append(f"  skipping zero-flagged pixels in {parsed.mask_file}")
    if noise_idum is not None:
        L.append("")
        L.append("  noise image paramters:")      # sic, as nanoBragg.c prints it
        L.append("  seed: %d" % noise_idum)
        L.append("  water droplet size: %s m" % g(cfg.sampling.water_size))
    return L


def printout_lines(sim, trace, pixel_value: float) -> List[str]:
    """C's ``-printout``/``-printout_pixel`` block for one pixel (l.3051-3072).

    ``stol`` is C's last computed sin(theta)/lambda (1/m, last source), the second value
    sin(theta)/lambda0 in 1/Angstrom from the pixel position (theta from the x axis, as C).
    ``pixel_value`` is the pixel as stored (float32).
    """
    p = sim.plan
    pos = np.asarray(trace.position, dtype=np.float64)
    r = float(np.sqrt(np.dot(pos, pos)))
    dvec = pos / r if r > 0 else pos
    src = p.src_dir.shape[0] - 1
    incident = -np.asarray(p.src_dir[src], dtype=np.float64)
    lam = float(p.src_lambda[src])
    stol = 0.5 * float(np.linalg.norm((dvec - incident) / lam))
    twotheta = math.atan2(math.sqrt(pos[1] * pos[1] + pos[2] * pos[2]), pos[0])
    test = math.sin(twotheta / 2.0) / (sim.config.beam.wavelength * 1e10)
    h, k, l = (float(v) for v in trace.hkl)
    h0, k0, l0 = (int(math.ceil(v - 0.5)) for v in (h, k, l))
    cell = np.asarray(trace.rotated_cell, dtype=np.float64)   # rows a, b, c (Angstrom)
    L = ["%4d %4d : stol = %s or %s" % (trace.fpixel, trace.spixel, g(stol), g(test)),
         "at %s %s %s" % (g(pos[0]), g(pos[1]), g(pos[2])),
         "hkl= %f %f %f  hkl0= %d %d %d" % (h, k, l, h0, k0, l0),
         " F_cell=%s  F_latt=%s   I = %s" % (g(trace.F_cell), g(trace.F_latt), g(trace.I)),
         "I/steps %15.10g" % trace.I_over_steps,
         "polar   %15.10g" % trace.polar,
         "omega   %15.10g" % trace.omega,
         "capfrac %15.10g" % trace.capture_fraction,
         "pixel   %15.10g" % pixel_value,
         "real-space cell vectors (Angstrom):",
         "     %-10s  %-10s  %-10s" % ("a", "b", "c")]
    for i, axis in enumerate("XYZ"):
        L.append(f"{axis}: " + _f11(cell[:, i]))
    return L


def solid_angle_lines(omega_over_steps: float) -> List[str]:
    """C's "solid angle subtended by detector" line (see stats.solid_angle_sum)."""
    return ["solid angle subtended by detector = %s steradian ( %s%% sphere)"
            % (g(omega_over_steps), g(100 * omega_over_steps / 4 / math.pi))]


def float_lines(path: str, pixels: int) -> List[str]:
    return ["writing %s as %d 4-byte floats" % (path, pixels)]


def stats_lines(stats, intfile_scale: float) -> List[str]:
    return stats.lines() + ["intfile_scale = %s" % g(intfile_scale)]


def int_lines(path: str) -> List[str]:
    return ["writing %s as 2-byte integers" % path]


def pgm_lines(path: str, pgm_scale: float) -> List[str]:
    return ["pgm_scale = %s" % g(pgm_scale), "writing %s as 1-byte integers" % path]


def noise_lines(result, path: str) -> List[str]:
    return [result.message, "writing %s as 2-byte integers" % path]
