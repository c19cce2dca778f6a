"""The ``nbsim`` command (also ``python -m nbsim``): nanoBragg's command line.

    nbsim -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 256 -floatfile f.bin

Flags, units and defaults are nanoBragg.c's (``nbsim -h`` lists them; the table is
:data:`nbsim.args.FLAGS`).  The run:

1. parse every flag and read every input file (-mask, -img, -mat, -sourcefile, -hkl or
   the dump file) and build the plan -- any problem stops here, before anything is
   written;
2. check that every output can be written (its directory exists and is writable);
3. print the summary (:mod:`nbsim.report`), render (a progress bar on stderr once a
   render has taken more than a second, unless ``-noprogress``), print ``-printout`` /
   ``-printout_pixel`` blocks, the statistics and the scales;
4. write the outputs: each to a temporary name in its directory, then all renamed at the
   end; any failure removes the temporary files, so an output either appears complete or
   not at all.  The dump file (Fdump.bin, after reading -hkl) is written with them; like
   nanoBragg, failing to write it is only a warning.

Exit status: 0 success; 2 bad flags, values or input files, or an output that cannot be
written (one line on stderr naming the flag or file, no traceback, no file written);
130 interrupted; 1 any other failure (one line; ``NBSIM_DEBUG=1`` shows the traceback).
Notes (flags that change nothing, a pivot request the convention overrides) go to stderr
as ``nbsim: note: ...`` lines; the summary and statistics go to stdout.  ``NBSIM_TIMING=1``
adds a note with the render time.

The progress bar needs a blocked render (:meth:`nbsim.Simulator.run_chunked`, CPU only,
same result as ``run()``); with ``-noprogress`` or another device the render is one
``run()`` call.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

import numpy as np

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

__all__ = ["main", "run", "NbsimError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]


class NbsimError(Exception):
    """A user-facing error (exit status 2); the message is the one line printed."""


def _debug() -> bool:
    return os.environ.get("NBSIM_DEBUG", "") not in ("", "0")


def _one_line(msg: str) -> str:
    return " ".join(str(msg).replace("\r", "\n").split("\n")).strip()


class _Out:
    """stdout writer that survives a closed pipe (``nbsim ... | head``)."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.ok = True

    def lines(self, lines: Sequence[str]):
        if not self.ok or not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.ok = False


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    """Run the command; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _T["main"] = time.perf_counter()
    _start_gpu_early(argv)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    debug = _debug()

    def fail(msg, code):
        try:
            err.write(f"nbsim: error: {_one_line(msg)}\n")
            err.flush()
        except (OSError, ValueError):
            pass
        return code

    from ..args import ArgError
    from ..errors import ConfigError
    from ..io.errors import FormatError
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return run(argv, _Out(out), err)
    except (NbsimError, ArgError, ConfigError, FormatError) as e:
        if debug:
            traceback.print_exc(file=err)
        return fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt:
        return fail("interrupted; no output written", EXIT_INTERRUPTED)
    except MemoryError:
        if debug:
            traceback.print_exc(file=err)
        return fail("out of memory (try a smaller detector, -roi or fewer steps)",
                    EXIT_FAILURE)
    except Exception as e:          # noqa: BLE001 - the CLI never shows a traceback
        if debug:
            traceback.print_exc(file=err)
        return fail(f"unexpected {type(e).__name__}: {e} "
                    f"(set NBSIM_DEBUG=1 for a traceback)", EXIT_FAILURE)


# ------------------------------------------------------------------ the run
def run(argv: Sequence[str], out: "_Out", err: TextIO) -> int:
    from .. import __version__
    from .. import report
    from ..args import HELP_FLAGS, parse_args, usage
    from ..errors import ConfigError
    from ..simulator import Simulator

    if any(a in HELP_FLAGS for a in argv):
        out.lines([usage().rstrip("\n")])
        return EXIT_OK
    if not argv:
        raise NbsimError("no flags given: a unit cell (-cell or -mat) and structure factors "
                         "(-hkl or -default_F) are needed (nbsim -h lists the flags)")

    from . import dataset as _dataset_cli
    if _dataset_cli.wants_dataset(argv):        # -nimages, -stills, -nexus, ...
        return _dataset_cli.run_dataset(argv, out, err)

    # 1. parse, read inputs, plan: every input problem stops the run here
    parsed = parse_args(argv)
    cfg = parsed.config
    outs = parsed.outputs
    try:
        sim = Simulator(cfg, threads=parsed.threads)
    except ConfigError as e:
        raise NbsimError(_config_message(e, parsed)) from None
    except ArithmeticError as e:
        # safety net: the geometry code divides by distances and products the flags can
        # make zero (a beam parallel to the detector, the detector origin at the sample)
        raise NbsimError(f"the flags give a degenerate geometry ({type(e).__name__}: {e}); "
                         f"check the distance, the detector and beam vectors and "
                         f"-pix0_vector") from None
    from . import suite_hooks       # noisify / nonBragg flags: checked before the render
    suite = suite_hooks.prepare(parsed, outs.adc_offset)
    # after the plan: with -device cuda|auto the driver thread (started first thing)
    # has had the imports and the plan to create the GPU context meanwhile
    _check_device(cfg)
    plan = sim.plan
    if plan.panels is not None and (outs.printout or outs.printout_pixel is not None):
        raise NbsimError("-printout / -printout_pixel: not available with a multi-panel "
                         "detector yet (docs/panels.md)")
    det = plan.detector
    _T["plan"] = time.perf_counter()

    # 2. outputs: where they go, and that they can be written
    targets = _output_targets(parsed)
    for flag, path, kind in targets:
        if kind != "dump":          # failing to write the dump file is only a warning
            _check_writable(flag, path)
    pixel_to_print = _printout_request(parsed, sim, err)
    noise_idum = _noise_idum(cfg) if outs.calculate_noise else None

    # notes only once the inputs are known to be good (an error is one line)
    stdout_notes, err_notes = report.split_notes(list(parsed.notes) + list(plan.notes)
                                                 + suite.notes)
    for n in err_notes:
        _note(err, n)

    # 3. summary, render, statistics
    out.lines(report.preamble_lines(parsed, sim, noise_idum=noise_idum,
                                    version=__version__, stdout_notes=stdout_notes))
    t0 = time.perf_counter()
    if outs.progress and cfg.device == "cpu":
        bar = _Progress(err)
        image = sim.run_chunked(bar.update)
        bar.finish()
    else:
        image = sim.run()
    render_s = time.perf_counter() - t0
    if plan.panels is not None:
        # multi-panel: the files hold the preset's tiled frame, or the stacked panels
        from ..geometry.panels import file_image
        image, det = file_image(plan, image)
    if getattr(sim, "_switch_pixel", None) not in (None, np.iinfo(np.int64).max):
        sp = int(sim._switch_pixel)
        _note(err, f"c-parity: tricubic interpolation went out of range at pixel "
                   f"{sp % det.fpixels} {sp // det.fpixels} and is off from there on, "
                   f"as in nanoBragg.c")
    img32 = np.ascontiguousarray(image, dtype=np.float32)
    img32, suite_lines = suite.background(plan, img32)      # -stol: amorphous background
    out.lines(suite_lines)

    if pixel_to_print is not None:
        block = 1 << 16                 # one kernel call per block of traced pixels
        for b in range(0, len(pixel_to_print), block):
            for tr in sim.trace_pixels(pixel_to_print[b:b + block]):
                out.lines(report.printout_lines(sim, tr, float(img32[tr.spixel, tr.fpixel])))
    out.lines([""])

    from ..io import (SMVHeader, int_image, pgm_image, write_fdump, write_float_image,
                      write_pgm, write_smv)
    from ..noise import noise_image
    from ..stats import image_stats, intfile_scale_rule, pgm_scale_rule, solid_angle_sum

    mask = None if cfg.detector.mask is None else (
        np.asarray(cfg.detector.mask).reshape(det.spixels, det.fpixels) != 0)
    stats = image_stats(img32, mask=mask, roi=det.roi, pixel_size=det.pixel_size,
                        oversample=plan.oversample)
    pending: List[Tuple[str, str, Callable[[str], None], bool]] = []
    pending.append(("-floatfile", outs.floatfile,
                    lambda p: write_float_image(p, img32), False))
    out.lines(report.solid_angle_lines(solid_angle_sum(plan)))
    out.lines(report.float_lines(outs.floatfile, img32.size))
    intfile_scale = intfile_scale_rule(stats.max_I, outs.intfile_scale)
    out.lines(report.stats_lines(stats, intfile_scale))
    header = SMVHeader(fpixels=det.fpixels, spixels=det.spixels, pixel_size=det.pixel_size,
                       distance=det.distance, lambda0=cfg.beam.wavelength, Xbeam=det.Xbeam,
                       Ybeam=det.Ybeam, Fbeam=det.Fbeam, Sbeam=det.Sbeam,
                       detsize_s=det.detsize_s, dials_origin=tuple(det.dials_origin),
                       ORGX=det.ORGX, ORGY=det.ORGY, close_distance=det.close_distance,
                       phi0=plan.crystal.phi0, osc=plan.crystal.osc,
                       detector_twotheta=det.twotheta)
    ints = int_image(img32, intfile_scale, outs.adc_offset, det.roi)
    pending.append(("-intfile", outs.intfile, lambda p: write_smv(p, ints, header), False))
    out.lines(report.int_lines(outs.intfile))
    if outs.write_pgm:
        pgm_scale = pgm_scale_rule(stats.rmsd, intfile_scale, outs.pgm_scale)
        pgm = pgm_image(img32, pgm_scale, det.roi)
        pending.append(("-pgmfile", outs.pgmfile, lambda p: write_pgm(p, pgm, pgm_scale),
                        False))
        out.lines(report.pgm_lines(outs.pgmfile, pgm_scale))
    if outs.calculate_noise and suite.effects is not None:    # noisify.c's chain
        noise_ints, bits, noise_lines = suite.noise(img32, noise_idum)
        pending.append(("-noisefile", outs.noisefile, lambda p: suite_hooks.write_noise_smv(
            p, noise_ints, header, bits), False))
        out.lines(noise_lines)
    elif outs.calculate_noise:
        noisy = noise_image(img32, idum=noise_idum, adc_offset=outs.adc_offset, roi=det.roi,
                            previous_state=_mosaic_stream_state(cfg, plan, noise_idum))
        pending.append(("-noisefile", outs.noisefile,
                        lambda p: write_smv(p, noisy.image, header, noise=True), False))
        out.lines(report.noise_lines(noisy, outs.noisefile))
    if outs.write_dump and parsed.hkl_data is not None:
        hkl = parsed.hkl_data
        # C writes the dump before rendering; here it joins the outputs (same bytes)
        pending.insert(0, ("-dumpfile", outs.dumpfile, lambda p: write_fdump(p, hkl), True))

    inputs = parsed.inputs
    if inputs is not None and inputs.write_hkl:
        from ..inputs.export import p1_writer
        pending.insert(0, ("-write_hkl", inputs.write_hkl, p1_writer(inputs), False))

    # 4. write everything, atomically as a set
    _commit(pending, err)
    _T["written"] = time.perf_counter()
    _note_timing(err, render_s, cfg)
    return EXIT_OK


# ------------------------------------------------------------------ helpers
def _start_gpu_early(argv: Sequence[str]):
    """With -device cuda|auto, start the CUDA driver and context now, on a thread, so
    that it overlaps the imports, the parsing and the plan (see kernels.cuda_warmup)."""
    device = None
    for i, a in enumerate(argv[:-1]):
        if a == "-device":
            device = argv[i + 1]
    if device in ("cuda", "auto"):
        from ..kernels import cuda_warmup
        cuda_warmup.start()


def _note(err: TextIO, msg: str):
    try:
        err.write(f"nbsim: note: {_one_line(msg)}\n")
        err.flush()
    except (OSError, ValueError):
        pass


_T = {}     # wall-clock marks of this run (NBSIM_TIMING)


def _note_timing(err, render_s, cfg):
    if not os.environ.get("NBSIM_TIMING"):
        return
    _note(err, f"render took {render_s:.3f} s ({cfg.device}, {cfg.dtype})")
    t = _T
    parts = [f"main->plan {t['plan'] - t['main']:.3f} s",
             f"render {render_s:.3f} s",
             f"plan->written {t['written'] - t['plan']:.3f} s"]
    if cfg.device == "cuda":
        from ..kernels import cuda_warmup
        sec = cuda_warmup.state().seconds
        if sec:
            parts.append("driver thread: cuInit %.3f s, context %.3f s"
                         % (sec.get("init", 0.0), sec.get("context", 0.0)))
    _note(err, "timing: " + ", ".join(parts))


def _check_device(cfg):
    if cfg.device == "cpu":
        return
    from ..kernels import cuda_warmup
    if cfg.device == "auto" and cuda_warmup.found_no_gpu():
        cfg.device = "cpu"
        return
    try:
        from ..kernels import cuda as kcuda
        kcuda.prepare_compiler()    # Python work first, while the driver thread runs
        ok = bool(kcuda.available())
    except Exception:               # noqa: BLE001 - no CUDA stack at all
        ok = False
    if not ok:
        if cfg.device == "cuda":
            from .._numba_setup import cuda_unavailable_reason
            why = cuda_unavailable_reason()
            raise NbsimError("-device cuda: no usable CUDA GPU (use -device cpu or auto)"
                             + (f": {why}" if why else ""))
        cfg.device = "cpu"          # auto: fall back to the CPU


def _config_message(e, parsed) -> str:
    """One line for a ConfigError, naming the flag (and the values) that set the parameter."""
    from ..args import flag_for_param
    param = getattr(e, "param", "")
    why = getattr(e, "why", str(e))
    given = parsed.given.get(param)
    if given is not None:
        flag, raw = given
        return f"{flag} {' '.join(raw)}: {why}".replace("  ", " ")
    headers = [f"-mask {parsed.mask_file}" if parsed.mask_file else None,
               f"-img {parsed.img_file}" if parsed.img_file else None]
    headers = [h for h in headers if h]
    if headers and param.startswith(("detector.", "beam.wavelength", "crystal.phi0",
                                     "crystal.osc")):
        return f"{headers[-1]}: the header gives {param}={e.value!r}: {why}"
    flag = flag_for_param(param)
    if flag:
        return f"{flag}: {why} ({param}={e.value!r})"
    return str(e)


def _output_targets(parsed):
    """(flag, path, kind) of every file the run writes, in nanoBragg's order."""
    o = parsed.outputs
    t = []
    if o.write_dump and parsed.hkl_data is not None:
        t.append(("-dumpfile", o.dumpfile, "dump"))
    if parsed.inputs is not None and parsed.inputs.write_hkl:
        t.append(("-write_hkl", parsed.inputs.write_hkl, "hkl"))
    t.append(("-floatfile", o.floatfile, "float"))
    t.append(("-intfile", o.intfile, "int"))
    if o.write_pgm:
        t.append(("-pgmfile", o.pgmfile, "pgm"))
    if o.calculate_noise:
        t.append(("-noisefile", o.noisefile, "noise"))
    return t


def _check_writable(flag: str, path: str):
    if not path:
        raise NbsimError(f"{flag}: empty file name")
    p = Path(path)
    if p.is_dir():
        raise NbsimError(f"{flag}: {path} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise NbsimError(f"{flag}: cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NbsimError(f"{flag}: cannot write {path}: directory {parent} is not writable")


def _printout_request(parsed, sim, err):
    """Pixels whose scaling chain C would print (in the ROI and not masked), or None."""
    o = parsed.outputs
    if not (o.printout or o.printout_pixel is not None):
        return None
    p = sim.plan
    det = p.detector
    fp = det.fpixels
    rendered = p.rendered_pixels
    if o.printout_pixel is not None:
        f, s = o.printout_pixel
        idx = s * fp + f
        if not (0 <= f < fp and 0 <= s < det.spixels) or not np.any(rendered == idx):
            _note(err, f"-printout_pixel {f} {s}: that pixel is not rendered (outside the "
                       f"detector or the ROI, or masked); nothing to print")
            return []
        return [(f, s)]
    return [(int(i % fp), int(i // fp)) for i in rendered]


def _noise_idum(cfg) -> int:
    """C's noise seed (an idum): -(-seed value), or -time() by default (l.354-355)."""
    from ..rng import idum_from_seed_flag
    if cfg.seed is None:
        return -int(time.time())
    return idum_from_seed_flag(cfg.seed)


def _mosaic_stream_state(cfg, plan, noise_idum):
    """ran1's static shuffle table as C leaves it before the noise image.

    It only matters when the noise idum is positive (a negative -seed), as ran1 then
    continues with the table of the stream used before: the mosaic domains (always drawn,
    three uniforms per domain), which itself continues the random-misset stream when its
    own idum is positive.
    """
    if noise_idum is None or noise_idum <= 0:
        return None
    from .. import rng
    from .._numba_setup import prepare_cpu
    prepare_cpu()
    c = cfg.crystal
    prev = None
    if c.misset_random:
        seed = c.misset_seed if c.misset_seed is not None else (
            cfg.seed if cfg.seed is not None else int(time.time()))
        prev = rng.new_state(rng.idum_from_seed_flag(seed))
        rng.random_misset_umat(state=prev)
    mos_idum = rng.idum_from_seed_flag(c.mosaic_seed)
    state = rng.new_state(mos_idum)
    if prev is not None and mos_idum > 0:
        rng.share_table(state, prev)
    rng.mosaic_umats(float(plan.crystal.mosaic_spread), int(plan.crystal.mosaic_domains),
                     state)
    return state


def _commit(pending, err):
    """Write every output to a temporary name beside it, then rename them all.

    A failure removes the temporary files (nothing is left behind) and raises NbsimError
    naming the flag and file; an optional output (the dump file) only warns.
    """
    done: List[Tuple[str, str]] = []
    try:
        for n, (flag, path, writer, optional) in enumerate(pending):
            p = Path(path)
            tmp = str(p.with_name(f".{p.name}.nbsim-{os.getpid()}-{n}.tmp"))
            try:
                writer(tmp)
            except OSError as e:
                _unlink(tmp)
                reason = e.strerror or str(e)
                if optional:
                    _note(err, f"WARNING: unable to write {flag} {path}: {reason}")
                    continue
                raise NbsimError(f"{flag}: cannot write {path}: {reason}") from None
            done.append((tmp, path))
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in done:
            _unlink(tmp)
        raise


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class _Progress:
    """Progress bar on stderr, shown once a render has taken more than a second.

    ``update(rows_done, rows_total)`` is called after each block of rows; on a terminal the
    bar is redrawn in place (at most 10 times a second), otherwise a line is written every
    10 %.  It shows rows done, the rate and the time left.
    """

    def __init__(self, stream: TextIO, delay: float = 1.0):
        self.stream = stream
        self.delay = delay
        self.t0 = time.perf_counter()
        self.shown = False
        self.last_draw = 0.0
        self.last_decile = -1
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False

    def update(self, done: int, total: int):
        now = time.perf_counter()
        elapsed = now - self.t0
        if elapsed < self.delay or total <= 0:
            return
        frac = done / total
        if self.tty:
            if now - self.last_draw < 0.1 and done < total:
                return
        else:
            decile = int(frac * 10)
            if decile == self.last_decile:
                return
            self.last_decile = decile
        self.last_draw = now
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else math.inf
        width = 30
        fill = int(round(frac * width))
        bar = "#" * fill + "." * (width - fill)
        text = (f"nbsim: rendering [{bar}] {100 * frac:5.1f}% {done}/{total} rows, "
                f"{rate:.1f} rows/s, {_fmt_time(left)} left")
        self._write(("\r" + text) if self.tty else (text + "\n"))
        self.shown = True

    def finish(self):
        if self.shown:
            elapsed = time.perf_counter() - self.t0
            msg = f"nbsim: rendered in {_fmt_time(elapsed)}"
            self._write(("\r" + msg + " " * 40 + "\n") if self.tty else (msg + "\n"))

    def _write(self, s):
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


if __name__ == "__main__":       # pragma: no cover
    sys.exit(main())
