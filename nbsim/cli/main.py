"""The ``nbsim`` command (also ``python -m nbsim``): nanoBragg's command line.

    nbsim -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 256 -floatfile f.bin

Flags, units and defaults are nanoBragg.c's (``nbsim -h`` lists them; the table is
:data:`nbsim.args.FLAGS`).  The run:

1. parse every flag and read every input file (-mask, -img, -mat, -sourcefile, -hkl or
   the dump file) and build the plan -- any problem stops here, before anything is
   written;
2. check that every output can be written (its directory exists and is writable), and
   decide whether the image is held whole or, for a detector too large for memory,
   rendered in row blocks streamed to the outputs (:mod:`nbsim.streaming`; refused
   before anything image-sized is allocated when an output needs the whole image);
3. print the summary (:mod:`nbsim.report`), render (a progress bar on stderr once a
   render has taken more than a second, unless ``-noprogress``), print ``-printout`` /
   ``-printout_pixel`` blocks, the statistics and the scales (:mod:`nbsim.outputs`);
4. write the outputs: each to a temporary name in its directory, then all renamed at the
   end; any failure or interrupt removes the temporary files, so an output either appears
   complete or not at all.  The dump file (Fdump.bin, after reading -hkl) is written with
   them; like nanoBragg, failing to write it is only a warning.

Exit status: 0 success; 2 bad flags, values or input files, or an output that cannot be
written (one line on stderr naming the flag or file, no traceback, no file written);
130 interrupted (SIGINT, Ctrl-C), 143 terminated (SIGTERM): one line, no output and no
temporary file left; 1 any other failure (one line; ``NBSIM_DEBUG=1`` shows the
traceback).  Notes (flags that change nothing, a pivot request the convention overrides)
go to stderr as ``nbsim: note: ...`` lines; the summary and statistics go to stdout.
``NBSIM_TIMING=1`` adds a note with the render time.

On the CPU the render always goes in blocks of rows (:meth:`nbsim.Simulator.run_chunked`,
bit-identical to ``run()``): the progress bar is drawn and a signal is taken between
blocks (Python runs signal handlers only between bytecodes, not inside a kernel); another
device renders in one ``run()`` call.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Optional, Sequence, TextIO

import numpy as np

from ._common import NbsimError, config_message, fmt_time

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130          # SIGINT (Ctrl-C): 128 + 2
EXIT_TERMINATED = 143           # SIGTERM: 128 + 15

__all__ = ["main", "run", "NbsimError", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE"]


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
    from ..outputs import OutputError
    try:
        with warnings.catch_warnings(), _signals_raise():
            if not debug:
                warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return run(argv, _Out(out), err)
    except (NbsimError, ArgError, ConfigError, FormatError, OutputError) as e:
        if debug:
            traceback.print_exc(file=err)
        return fail(str(e), EXIT_USAGE)
    except KeyboardInterrupt as e:
        if isinstance(e, _Terminated):
            return fail("terminated (SIGTERM); no output written", EXIT_TERMINATED)
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
        raise NbsimError(config_message(e, parsed)) from None
    except ArithmeticError as e:
        # safety net: the geometry code divides by distances and products the flags can
        # make zero (a beam parallel to the detector, the detector origin at the sample)
        raise NbsimError(f"the flags give a degenerate geometry ({type(e).__name__}: {e}); "
                         f"check the distance, the detector and beam vectors and "
                         f"-pix0_vector") from None
    from .. import suite as suite_flags   # noisify / nonBragg flags: checked before the render
    suite = suite_flags.prepare(parsed, outs.adc_offset)
    # after the plan: with -device cuda|auto the driver thread (started first thing)
    # has had the imports and the plan to create the GPU context meanwhile
    _check_device(cfg)
    plan = sim.plan
    if plan.panels is not None and (outs.printout or outs.printout_pixel is not None):
        raise NbsimError("-printout / -printout_pixel: not available with a multi-panel "
                         "detector yet (docs/panels.md)")
    det = plan.detector
    _T["plan"] = time.perf_counter()

    # 2. outputs: where they go, and that they can be written; whether the image is held
    # whole or streamed in row blocks (a detector too large for memory)
    targets = _output_targets(parsed)
    if "write_expt" in outs.dataset:
        targets.append(("-write_expt", str(outs.dataset["write_expt"]), "expt"))
        _expt_step(plan, outs, _space_group(parsed))              # a geometry dxtbx cannot take: before render
    for flag, path, kind in targets:
        if kind != "dump":          # failing to write the dump file is only a warning
            _check_writable(flag, path)
    from ..streaming import choose_streaming
    stream = choose_streaming(plan, outs, cfg.device)
    truth_path = outs.dataset.get("truth")
    if truth_path is not None:
        truth_path = str(truth_path)
        _check_truth_target(truth_path)
        if stream is not None:
            raise NbsimError(f"-truth: this detector needs {stream.estimate / 2**30:.2f} GiB "
                             f"in one piece, more than the memory limit; the truth needs "
                             f"the whole image: use -roi or fewer pixels")
    if stream is None:
        suite.prepare_background(plan)      # -stol / -ice / hot pixels: errors before the render
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
    from ..outputs import OutputSet, OutputStep, image_outputs
    from ..io import write_fdump
    outputs = OutputSet(lambda msg: _note(err, msg))
    try:
        if stream is not None:
            if suite_flags.wants_background(parsed, suite) or suite.effects is not None or \
                    suite.detector is not None or plan.panels is not None:
                raise NbsimError(f"this detector needs {stream.estimate / 2**30:.2f} GiB in one piece, "
                                 f"more than the memory limit, and -stol / -ice / -bad_pixels / "
                                 f"the noisify flags / the detector models / panels need the whole "
                                 f"image: use -roi or fewer pixels")
            from ..streaming import render_streamed
            t0 = time.perf_counter()
            lines = render_streamed(sim, stream, outs, outputs,
                                    progress=_Progress(err) if outs.progress else None,
                                    noise_idum=noise_idum,
                                    previous_state=_mosaic_stream_state(cfg, plan, noise_idum))
            render_s = stream.render_seconds
            _note_switch(err, sim, det)
            out.lines([""] + lines)
            steps = []
        else:
            t0 = time.perf_counter()
            if truth_path is not None:
                # the render with its reflection truth (CPU, general kernel, one piece)
                image64 = sim.run(truth=True)
                img32 = np.ascontiguousarray(image64, dtype=np.float32)
                sim.image = img32
            else:
                img32 = _render_one_piece(sim, cfg, outs, err)
            render_s = time.perf_counter() - t0
            _note_switch(err, sim, det)
            if plan.panels is not None:
                # multi-panel: (panels, slow, fast) through the effects; the writers lay
                # the files out (a preset's tiled frame, else the stacked panels)
                from ..image_model import as_frame
                img32 = as_frame(plan, img32)
            img32, suite_lines = suite.background(plan, img32)  # -stol: amorphous background
            out.lines(suite_lines)
            if pixel_to_print is not None:
                block = 1 << 16                 # one kernel call per block of traced pixels
                for b in range(0, len(pixel_to_print), block):
                    for tr in sim.trace_pixels(pixel_to_print[b:b + block]):
                        out.lines(report.printout_lines(
                            sim, tr, float(img32[tr.spixel, tr.fpixel])))
            out.lines([""])
            truth_steps = []
            if truth_path is not None:
                truth_steps = _truth_steps(truth_path, sim, plan, image64, suite)
            lines, steps = image_outputs(img32, plan, outs, noise_idum=noise_idum,
                                         previous_state=_mosaic_stream_state(cfg, plan,
                                                                             noise_idum),
                                         compiled=_compiled_outputs(cfg, det),
                                         suite=suite)
            out.lines(lines)
            steps.extend(truth_steps)
        if outs.write_dump and parsed.hkl_data is not None:
            hkl = parsed.hkl_data
            # C writes the dump before rendering; here it joins the outputs (same bytes)
            steps.insert(0, OutputStep("-dumpfile", outs.dumpfile,
                                       lambda p: write_fdump(p, hkl), optional=True))
        if "write_expt" in outs.dataset:
            steps.append(_expt_step(plan, outs, _space_group(parsed)))
        inputs = parsed.inputs
        if inputs is not None and inputs.write_hkl:
            from ..inputs.export import p1_writer
            steps.insert(0, OutputStep("-write_hkl", inputs.write_hkl, p1_writer(inputs)))

        # 4. write everything, atomically as a set
        outputs.write(steps)
        with _signals_deferred():
            outputs.commit()
    finally:
        outputs.discard()
    _T["written"] = time.perf_counter()
    _note_timing(err, render_s, cfg)
    return EXIT_OK


def _space_group(parsed):
    """The space group of -mtz / -sfcif / -model (None without one)."""
    return parsed.inputs.space_group if parsed.inputs is not None else None


def _expt_step(plan, outs, space_group=None):
    """-write_expt of one image: a one-frame rotation scan (or a still when -osc is 0)
    whose imageset is the SMV noise image (else the int image), the ADC offset its
    pedestal; the crystal in ``space_group`` (the structure factors', a gemmi name; None:
    P 1)."""
    from ..io.dials_expt import experiment_list, hall_symbol, write_expt
    from ..io.sinks import FrameScan
    from ..units import RTD
    from ..outputs import OutputStep
    c = plan.crystal
    rows = np.array([c.a0, c.b0, c.c0], dtype=np.float64)
    scans = [FrameScan(c.phi0 * RTD, c.osc * RTD)] if c.osc > 0 else None
    if scans is None and c.phi0 != 0.0:
        from ..io.dials_expt import rotate_rows
        rows = rotate_rows(rows, plan.detector.spindle, float(c.phi0))
    image = outs.noisefile if outs.calculate_noise else outs.intfile
    adc = float(outs.adc_offset)
    # a multi-panel image file holds the tiled frame or stacked panels, not dxtbx's
    # panels: no imageset then (dials.import the images with reference_geometry=)
    images = None if plan.panels is not None else ("template", image)
    try:
        doc = experiment_list(plan, 1, scans, [rows], images=images,
                              exposure_s=float(plan.config.beam.exposure),
                              trusted=(-1.0, 65535.0 - adc), hall=hall_symbol(space_group))
    except ValueError as e:
        raise NbsimError(f"-write_expt: {e}") from None
    for p in doc["detector"][0]["panels"]:
        p["pedestal"] = adc
    return OutputStep("-write_expt", str(outs.dataset["write_expt"]),
                      lambda path: write_expt(path, doc))


def _check_truth_target(path: str):
    """-truth FILE.refl: a writable .refl and FILE_labels.h5 beside it."""
    from ..dataset.truth_sink import labels_path
    if not path.endswith(".refl"):
        raise NbsimError(f"-truth {path}: the truth file is a DIALS reflection file: "
                         f"name it FILE.refl")
    _check_writable("-truth", path)
    _check_writable("-truth", labels_path(path))


def _truth_steps(path, sim, plan, image64, suite):
    """The -truth files of a single image: FILE.refl (experiment "0") and
    FILE_labels.h5 (labels, Bragg fraction of the render plus any -stol background)."""
    from ..dataset.truth_sink import labels_path
    from ..image_model import as_frame
    from ..io.refl import write_refl
    from ..outputs import OutputStep
    ft = sim.frame_truth
    total = np.asarray(as_frame(plan, image64), dtype=np.float64)
    if suite.background_image is not None:       # -stol: computed once, for the image
        total = total + as_frame(plan, suite.background_image)
    frac = ft.bragg_fraction(total)
    table = ft.table

    def write_labels(p):
        import h5py
        shape = (1, ft.labels.shape[0] * ft.labels.shape[1], ft.labels.shape[2])
        with h5py.File(p, "w") as f:
            f.create_dataset("labels", data=ft.labels.reshape(shape), chunks=shape,
                             compression="gzip")
            f.create_dataset("bragg_fraction", data=frac.reshape(shape).astype(np.float32),
                             chunks=shape, compression="gzip")
            f.create_dataset("first_row", data=np.zeros(1, dtype=np.int64))
    from ..io.dials_expt import experiment_identifier
    ident = {0: experiment_identifier(None, 0)}      # -write_expt's single image
    return [OutputStep("-truth", path, lambda p: write_refl(p, table, ident)),
            OutputStep("-truth", labels_path(path), write_labels)]


def _render_one_piece(sim, cfg, outs, err):
    """The whole image as C stores it (float32): on the CPU rendered in blocks of rows
    that are rounded as they complete (the float64 image is never held whole; a progress
    bar unless -noprogress; between blocks a signal is taken), else in one call."""
    if cfg.device != "cpu":
        img32 = np.ascontiguousarray(sim.run(), dtype=np.float32)
        sim.image = img32                   # trace_pixels: "rendered already"
        return img32
    from ..streaming import render_float32
    bar = _Progress(err) if outs.progress else None
    img32 = render_float32(sim, bar)
    if bar:
        bar.finish()
    sim.image = img32                       # trace_pixels: "rendered already"
    return img32


def _compiled_outputs(cfg, det) -> bool:
    """Statistics / int / PGM by the compiled loops (nbsim.postrender) or by NumPy (same
    bytes): compiled on the CPU from 512 x 512 pixels up -- below, loading the compiled
    code from the cache costs more than NumPy's passes; a GPU run keeps NumPy (Numba's
    CPU target is then never set up without noise)."""
    return cfg.device == "cpu" and det.fpixels * det.spixels >= (1 << 18)


def _note_switch(err, sim, det):
    if getattr(sim, "_switch_pixel", None) not in (None, np.iinfo(np.int64).max):
        sp = int(sim._switch_pixel)
        _note(err, f"c-parity: tricubic interpolation went out of range at pixel "
                   f"{sp % det.fpixels} {sp // det.fpixels} and is off from there on, "
                   f"as in nanoBragg.c")


# ------------------------------------------------------------------ signals
class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same clean-up runs."""


_DEFER = {"on": False}


@contextlib.contextmanager
def _signals_raise():
    """SIGINT and SIGTERM raise (KeyboardInterrupt / _Terminated) in the main thread, so
    every temporary file is removed on the way out; restored afterwards.  Python runs
    the handler between bytecodes, hence the CPU render goes in blocks of rows (a
    fraction of a second each).  Not installed off the main thread (signal's rule)."""
    import signal

    def handler(signum, frame):
        if _DEFER["on"]:
            return                      # renaming the finished outputs: let it complete
        raise _Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    try:
        old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:                  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


@contextlib.contextmanager
def _signals_deferred():
    """Ignore SIGINT/SIGTERM while the finished outputs are renamed (a set either appears
    whole or not at all: an interrupt there would leave part of it)."""
    _DEFER["on"] = True
    try:
        yield
    finally:
        _DEFER["on"] = False


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
                f"{rate:.1f} rows/s, {fmt_time(left)} left")
        self._write(("\r" + text) if self.tty else (text + "\n"))
        self.shown = True

    def finish(self):
        if self.shown:
            elapsed = time.perf_counter() - self.t0
            msg = f"nbsim: rendered in {fmt_time(elapsed)}"
            self._write(("\r" + msg + " " * 40 + "\n") if self.tty else (msg + "\n"))

    def _write(self, s):
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def console() -> None:
    """The console script's entry point: :func:`main`, then a quick exit
    (:mod:`nbsim.cli._exit`)."""
    from ._exit import exit_now
    exit_now(main())


if __name__ == "__main__":       # pragma: no cover
    console()
