"""``nbsim`` with dataset flags: a rotation scan or serial stills as one job.

    nbsim -cell 100 100 100 90 90 90 -default_F 100 -N 5 -detpixels 256 \\
          -osc 0.5 -phisteps 3 -nimages 12 -nexus scan.h5 -noisefile img_#####.img

Dispatched from :func:`nbsim.cli.main.run` when any of -nimages, -stills,
-orientations, -nexus, -nexus_compression, -cbf, -png, -workers, -scheduler,
-worker_blocks, -resume is given.  The flags are nanoBragg's plus those; the single-image
defaults (floatimage.bin, intimage.img, ...) are *not* written: only the outputs asked
for, per frame under a ``#`` template (``img_#####.img`` -> img_00001.img ...).
Everything is checked before anything is written: a series without an output or with a
template lacking ``#``, an output directory that cannot be written, ``-resume`` against a
job made with other flags (the differing flag is named), ``-workers`` without Dask --
each is one line on stderr and exit status 2.  Ctrl-C leaves the complete frames and
the job record; the same command with ``-resume`` finishes the job (exit status 130
meanwhile).  See docs/datasets.md.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import List, TextIO

DATASET_FLAGS = ("-nimages", "-stills", "-orientations", "-nexus", "-nexus_compression",
                 "-cbf", "-png", "-workers", "-scheduler", "-worker_blocks", "-resume",
                 # per-frame spectra and radiation damage (a single image: one frame)
                 "-sase_bandwidth", "-sase_jitter", "-sase_duration", "-spectrum",
                 "-spectrum_channels", "-dose", "-mu_en", "-crystal_density", "-b_per_mgy",
                 "-damaged_mtz", "-half_dose",
                 # per-frame random flag values, several crystals in the beam
                 "-vary", "-lattices")
_FILE_TEMPLATES = ("-floatfile", "-intfile", "-noisefile", "-pgmfile")
_PREVIEW_FRAMES = 9
EXIT_OK, EXIT_INTERRUPTED = 0, 130


def wants_dataset(argv) -> bool:
    return any(str(a) in DATASET_FLAGS for a in argv)


def _error(msg):
    from ._common import NbsimError
    return NbsimError(msg)


def _note(err: TextIO, msg: str):
    try:
        err.write(f"nbsim: note: {msg}\n")
        err.flush()
    except (OSError, ValueError):
        pass


def _check_target(flag: str, path: str):
    """The directory of ``path`` exists and is writable, and ``path`` is no directory."""
    if not path:
        raise _error(f"{flag}: empty file name")
    p = Path(path)
    if p.is_dir():
        raise _error(f"{flag}: {path} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise _error(f"{flag}: cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _error(f"{flag}: cannot write {path}: directory {parent} is not writable")


class _FrameProgress:
    """Frames done, rate and time left on stderr (in place on a terminal, else a line
    per 10 %), once the job has run a second."""

    def __init__(self, stream: TextIO, delay: float = 1.0):
        self.stream = stream
        self.delay = delay
        self.t0 = time.perf_counter()
        self.start_done = None
        self.shown = False
        self.last = 0.0
        self.decile = -1
        try:
            self.tty = bool(stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False

    def __call__(self, done: int, total: int):
        from ._common import fmt_time
        if self.start_done is None:
            self.start_done = done
        now = time.perf_counter()
        el = now - self.t0
        if el < self.delay or total <= 0:
            return
        frac = done / total
        if self.tty:
            if now - self.last < 0.1 and done < total:
                return
        else:
            d = int(frac * 10)
            if d == self.decile:
                return
            self.decile = d
        self.last = now
        rate = (done - self.start_done) / el if el > 0 else 0.0
        left = (total - done) / rate if rate > 0 else math.inf
        bar = "#" * int(round(frac * 30))
        text = (f"nbsim: rendering frames [{bar:.<30}] {100 * frac:5.1f}% {done}/{total}, "
                f"{rate:.2f} frames/s, {fmt_time(left)} left")
        try:
            self.stream.write(("\r" + text) if self.tty else (text + "\n"))
            self.stream.flush()
        except (OSError, ValueError):
            pass
        self.shown = True

    def finish(self):
        if self.shown and self.tty:
            try:
                self.stream.write("\n")
            except (OSError, ValueError):
                pass


def _vary_and_lattices(parsed, d):
    """(VarySpec or None, lattices) of -vary / -lattices (stills only)."""
    vary, lattices = None, int(d.get("lattices", 1))
    for flag in ("vary", "lattices"):
        if flag in d and "stills" not in d:
            raise _error(f"-{flag}: needs -stills N (a rotation scan has one crystal and "
                         f"one beam)")
    if "lattices" in d:
        if lattices < 1:
            raise _error(f"-lattices: needs at least 1 crystal, got {lattices}")
        if lattices > 1:
            if "orientations" in d:
                raise _error(f"-lattices {lattices}: cannot be combined with -orientations "
                             f"(each lattice draws its own random orientation)")
            if not parsed.config.crystal.misset_random:
                raise _error(f"-lattices {lattices}: needs -misset random (each lattice "
                             f"draws its own random orientation)")
    if "vary" in d:
        from ..dataset.vary import read_vary
        path = str(d["vary"])
        try:
            vary = read_vary(path)
        except FileNotFoundError:
            raise _error(f"-vary: cannot open {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise _error(f"-vary: cannot read {path}: {e}") from None
        except ValueError as e:
            raise _error(f"-vary {path}: {e}") from None
        if "fluence" in vary.names and parsed.config.beam.flux > 0:
            raise _error(f"-vary {path}: fluence: the run's -flux decides the fluence; "
                         f"give -fluence instead of -flux")
    return vary, lattices


def _frames_from(parsed, d):
    from ..dataset import RotationScan, Stills, read_orientations
    vary, lattices = _vary_and_lattices(parsed, d)
    if "nimages" in d and "stills" in d:
        raise _error("-stills: cannot be combined with -nimages (a rotation scan); "
                     "give one of them")
    if "stills" in d:
        n = int(d["stills"])
        if n < 1:
            raise _error(f"-stills: needs at least 1 frame, got {n}")
        if "orientations" in d:
            path = str(d["orientations"])
            if "crystal.misset" in parsed.given:
                flag, raw = parsed.given["crystal.misset"]
                raise _error(f"-orientations: cannot be combined with {flag} "
                             f"{' '.join(raw)} (each line of {path} is a frame's "
                             f"orientation); give one of them")
            try:
                ori = read_orientations(path)
            except FileNotFoundError:
                raise _error(f"-orientations: cannot open {path}") from None
            except (OSError, ValueError) as e:
                raise _error(f"-orientations: {path}: {e}") from None
            if len(ori) != n:
                raise _error(f"-orientations: {path} has {len(ori)} orientations for "
                             f"-stills {n}")
            return Stills(n, ori, vary=vary)
        return Stills(n, "random" if parsed.config.crystal.misset_random else None,
                      vary=vary, lattices=lattices)
    if "orientations" in d:
        raise _error("-orientations: needs -stills N (orientations of serial stills)")
    n = int(d.get("nimages", 1))
    if n < 1:
        raise _error(f"-nimages: needs at least 1 frame, got {n}")
    return RotationScan(n)


#: Config parameters that make sources, which a spectrum replaces
_SOURCE_PARAMS = ("beam.sources", "beam.dispersion", "beam.hdivrange", "beam.vdivrange")


def _spectrum_from(parsed, d):
    """-sase_bandwidth / -spectrum: the spectrum per frame (nbsim.geometry.spectrum)."""
    from ..geometry.spectrum import SaseSpectrum, read_spectrum
    sase, path = "sase_bandwidth" in d, d.get("spectrum")
    for k in ("sase_jitter", "sase_duration"):
        if k in d and not sase:
            raise _error(f"-{k}: needs -sase_bandwidth (a SASE spectrum)")
    if "spectrum_channels" in d and not (sase or path is not None):
        raise _error("-spectrum_channels: needs -sase_bandwidth or -spectrum")
    if not sase and path is None:
        return None
    if sase and path is not None:
        raise _error("-spectrum: cannot be combined with -sase_bandwidth; give one spectrum")
    which = "-sase_bandwidth" if sase else "-spectrum"
    for p in _SOURCE_PARAMS:
        if p in parsed.given:
            flag = parsed.given[p][0]
            raise _error(f"{flag}: cannot be combined with {which} (the spectrum's channels "
                         f"are the sources)")
    n = d.get("spectrum_channels", 100)
    try:
        if sase:
            return SaseSpectrum(float(d["sase_bandwidth"]), float(d.get("sase_jitter", 0.0)),
                                float(d.get("sase_duration", 30.0)), int(n))
        return read_spectrum(str(path), int(n))
    except FileNotFoundError:
        raise _error(f"-spectrum: cannot open {path}") from None
    except IsADirectoryError:
        raise _error(f"-spectrum: {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise _error(f"-spectrum: cannot read {path}: {e}") from None
    except ValueError as e:
        msg = str(e)
        raise _error(msg if msg.startswith("-") else f"-spectrum: {path}: {msg}") from None


def _damage_from(parsed, d):
    """-dose / -mu_en and the other damage flags (nbsim.dataset.damage)."""
    from ..dataset.damage import DEFAULT_B_PER_MGY, DamageSpec
    on = "dose" in d or "mu_en" in d
    for k in ("b_per_mgy", "damaged_mtz", "half_dose", "crystal_density"):
        if k in d and not on:
            raise _error(f"-{k}: needs -dose MGy or -mu_en 1/mm (radiation damage)")
    if not on:
        return None
    if "dose" in d and "mu_en" in d:
        raise _error("-mu_en: cannot be combined with -dose (it computes the dose); give "
                     "one of them")
    if "crystal_density" in d and "mu_en" not in d:
        raise _error("-crystal_density: needs -mu_en (the dose from the fluence)")
    if ("damaged_mtz" in d) != ("half_dose" in d):
        raise _error("-damaged_mtz and -half_dose: give both (the damaged structure "
                     "factors and the dose at which half the cells are damaged)")
    damaged = None
    if "damaged_mtz" in d:
        path = str(d["damaged_mtz"])
        default_F = parsed.config.structure.default_F
        try:
            if path.lower().endswith(".mtz"):
                from ..inputs.mtz import read_mtz
                from ..inputs.symmetry import p1_hkl_data
                damaged, _p1 = p1_hkl_data(read_mtz(path), default_F=default_F)
            else:
                from ..io.hkl import read_hkl
                damaged = read_hkl(path, default_F)
        except FileNotFoundError:
            raise _error(f"-damaged_mtz: cannot open {path}") from None
        except ImportError as e:
            raise _error(f"-damaged_mtz: {e}") from None
        except (OSError, ValueError, RuntimeError) as e:
            raise _error(f"-damaged_mtz: {path}: {e}") from None
    try:
        return DamageSpec(dose_per_frame=d.get("dose"), mu_en=d.get("mu_en"),
                          density=float(d.get("crystal_density", 1.2)),
                          b_per_mgy=float(d.get("b_per_mgy", DEFAULT_B_PER_MGY)),
                          damaged=damaged, half_dose=d.get("half_dose"))
    except ValueError as e:
        raise _error(str(e)) from None


def _check_truth_target(path: str, nexus):
    """-truth FILE.refl: a writable .refl (and its _labels.h5 without -nexus)."""
    if not path.endswith(".refl"):
        raise _error(f"-truth {path}: the truth file is a DIALS reflection file: "
                     f"name it FILE.refl")
    _check_target("-truth", path)
    if nexus is None:
        from ..dataset.truth_sink import labels_path
        _check_target("-truth", labels_path(path))


def run_dataset(argv, out, err) -> int:
    from ..args import FLAG_INDEX, parse_args, tokenize
    from ..dataset import Dataset
    from ..dataset.driver import run_frames
    from ..dataset.executors import DaskExecutor, DaskMissing, InProcess, require_dask
    from ..dataset.manifest import JobRecord, first_difference, job_flags
    from ..dataset.outputs import Output, TemplateSink, dataset_info, frame_products
    from ..errors import ConfigError
    from ..io.sinks import frame_path

    argv = [str(a) for a in argv]
    parsed = parse_args(argv)
    cfg = parsed.config
    outs = parsed.outputs
    d = outs.dataset
    frames = _frames_from(parsed, d)
    spectrum = _spectrum_from(parsed, d)
    vary = getattr(frames, "vary", None)
    if spectrum is not None and vary is not None and "lambda" in vary.names:
        which = "-sase_bandwidth" if "sase_bandwidth" in d else "-spectrum"
        raise _error(f"-vary {d['vary']}: lambda cannot vary with {which} (the spectrum "
                     f"gives each frame's wavelengths)")
    damage = _damage_from(parsed, d)
    n = frames.nframes
    given = {FLAG_INDEX[f].names[0] for f, _ in tokenize(argv) if f != "-h"}

    # ---- outputs asked for (only those: the single-image defaults are not written)
    targets = []                              # (flag, template or file)
    for flag in _FILE_TEMPLATES:
        if flag in given:
            t = getattr(outs, flag[1:])
            if flag == "-noisefile" and not outs.calculate_noise:
                _note(err, "-nonoise: no -noisefile frames are written")
                continue
            targets.append((flag, t))
    if "cbf" in d:
        targets.append(("-cbf", str(d["cbf"])))
    nexus = str(d["nexus"]) if "nexus" in d else None
    png = str(d["png"]) if "png" in d else None
    if nexus is None and not targets and png is None and "truth" not in d:
        raise _error(f"a series of {n} frame{'s' if n > 1 else ''} needs an output: "
                     f"-nexus FILE.h5, a '#' template with -cbf, -floatfile, -intfile, "
                     f"-noisefile or -pgmfile, -png FILE or -truth FILE.refl")
    for flag, t in targets:
        if n > 1 and "#" not in os.path.basename(t):
            stem, ext = os.path.splitext(os.path.basename(t))
            raise _error(f"{flag} {t}: a series of {n} frames needs '#' digits in the file "
                         f"name, one file per frame (e.g. {stem}_#####{ext})")
        _check_target(flag, frame_path(t, 0) if "#" in os.path.basename(t) else t)
    if nexus is not None:
        if cfg.detector.curved:
            raise _error(f"-curved_det: cannot be combined with -nexus {nexus} (NXmx "
                         f"describes flat detector modules only); use -cbf or -floatfile")
        _check_target("-nexus", nexus)
    # -write_hkl: the P1 list, written once for the dataset (after its frames)
    write_hkl = parsed.inputs.write_hkl if parsed.inputs is not None else None
    if write_hkl:
        _check_target("-write_hkl", write_hkl)
    if png is not None:
        _check_target("-png", png)
    write_expt = str(d["write_expt"]) if "write_expt" in d else None
    if write_expt is not None:
        if cfg.detector.curved:
            raise _error("-write_expt: a curved detector (-curved_det) cannot be described "
                         "by dxtbx's flat panels")
        _check_target("-write_expt", write_expt)
    truth = str(d["truth"]) if "truth" in d else None
    if truth is not None:
        _check_truth_target(truth, nexus)
    compression = str(d.get("nexus_compression", "bslz4")).lower()
    if compression not in ("bslz4", "gzip", "none"):
        raise _error(f"-nexus_compression: expected bslz4, gzip or none, got {compression!r}")

    # ---- where frames run
    workers = d.get("workers")
    scheduler = d.get("scheduler")
    if workers is not None and scheduler is not None:
        raise _error("-scheduler: cannot be combined with -workers (a local cluster)")
    if workers is not None and int(workers) < 1:
        raise _error(f"-workers: needs at least 1 worker, got {workers}")
    max_workers = 4 * (os.cpu_count() or 1)
    if workers is not None and int(workers) > max_workers:
        raise _error(f"-workers: {workers} local worker processes for "
                     f"{os.cpu_count()} cores is too many (at most {max_workers}; use "
                     f"-scheduler for a cluster)")
    try:
        if workers is not None:
            require_dask("-workers")
        if scheduler is not None:
            require_dask("-scheduler")
    except DaskMissing as e:
        raise _error(str(e)) from None
    blocks = d.get("worker_blocks")
    if blocks is None and scheduler is not None and nexus is not None:
        blocks = 16
    if blocks is not None:
        blocks = int(blocks)
        if blocks < 1:
            raise _error(f"-worker_blocks: needs at least 1 frame per block, got {blocks}")
        if nexus is None:
            raise _error("-worker_blocks: the workers write -nexus data blocks; give -nexus")
        if workers is None and scheduler is None:
            raise _error("-worker_blocks: needs -workers N or -scheduler ADDRESS")
        if truth is not None:
            raise _error("-truth: not available with worker-written -nexus blocks "
                         "(-worker_blocks, -scheduler with -nexus) yet; use -workers "
                         "without -worker_blocks")

    # ---- the job record: new, or the one -resume continues
    resume = bool(d.get("resume"))
    first = nexus if nexus is not None else (targets[0][1] if targets else
                                             (png if png is not None else truth))
    record_path = JobRecord.path_for(first)
    flags = job_flags(argv)
    seed = misset_seed = None
    if resume:
        try:
            rec = JobRecord.load(record_path)
        except FileNotFoundError:
            raise _error(f"-resume: no job record {record_path} (was {first} made by "
                         f"nbsim with these outputs?)") from None
        except (OSError, ValueError) as e:
            raise _error(f"-resume: {record_path}: {e}") from None
        diff = first_difference(rec.flags, flags)
        if diff:
            raise _error(f"-resume: {first} {diff}; give the job's own flags (or start "
                         f"again without -resume)")
        seed, misset_seed = rec.seed, rec.misset_seed
    _check_target("(job record)", record_path)

    # ---- the dataset and its plan (every input problem stops here)
    try:
        ds = Dataset(cfg, frames, seed=seed, misset_seed=misset_seed,
                     noise=outs.calculate_noise, threads=parsed.threads,
                     truth=truth is not None, spectrum=spectrum, damage=damage)
        if ds.vary is not None:
            try:
                ds.vary_base()
            except ValueError as e:
                raise _error(f"-vary {d['vary']}: {e}") from None
        plan0 = ds.plan(0)
        if ds.vary is not None:
            # every frame's draws now (cheap, nothing rendered): an invalid value stops
            # the job before anything is written
            try:
                for i in range(n):
                    ds.frame_parameters(i)
            except ValueError as e:
                raise _error(f"-vary {d['vary']}: {e}") from None
            for i in sorted({0, n - 1}):
                for spec in ds.frame(i).all_lattices:
                    ds.renderer.plan_for(spec)
    except ConfigError as e:
        from ._common import config_message
        raise _error(config_message(e, parsed)) from None
    except ValueError as e:             # the spectrum and damage models' checks
        raise _error(str(e)) from None
    except ArithmeticError as e:
        raise _error(f"the flags give a degenerate geometry ({type(e).__name__}: {e}); "
                     f"check the distance, the detector and beam vectors and "
                     f"-pix0_vector") from None
    # the detector suite per frame (-stol background once, noisify flags): checked here
    from ..dataset.effects import FrameEffects
    ds.effects = FrameEffects.from_parsed(parsed, lambda: ds.renderer.base)
    if ds.effects is not None:
        for msg in ds.effects.notes:
            _note(err, msg)
    if not resume:
        rec = JobRecord(record_path, flags, kind=frames.kind, nframes=n,
                        seed=ds.seeds.seed, misset_seed=ds.seeds.misset_seed)
    info = dataset_info(ds, command=argv)
    prod = frame_products(ds, outs)
    expt_doc = None
    if write_expt is not None:
        from ..dataset.outputs import job_experiments
        # the imageset points at the frames that need it most: SMV (whose header dxtbx
        # misreads; the panels' pedestal is then the ADC offset), miniCBF, NeXus
        order = ("-noisefile", "-intfile", "-cbf", "-nexus")
        if plan0.panels is not None:
            # per-frame files hold a tiled frame or one panel each: only NeXus has the
            # panels as dxtbx's detector model has them
            order = ("-nexus",)
        images = min((((f, t) for f, t in ([("-nexus", nexus)] if nexus else []) + targets
                       if f in order)), key=lambda ft: order.index(ft[0]), default=None)
        try:
            sg = parsed.inputs.space_group if parsed.inputs is not None else None
            expt_doc = job_experiments(ds, info, images, outs.adc_offset, space_group=sg)
        except ValueError as e:
            raise _error(f"-write_expt: {e}") from None

    outputs: List[Output] = []
    if nexus is not None and blocks is None:
        try:
            from ..io.nexus import NexusSink
        except ImportError:
            raise _error("-nexus needs h5py and hdf5plugin: pip install -e \".[formats]\"") \
                from None
        outputs.append(Output("-nexus", nexus,
                              NexusSink(nexus, compression=None if compression == "none"
                                        else compression), prod.detector_data,
                              needs_image=False))
    if truth is not None:
        from ..dataset.truth_sink import TruthSink
        # after -nexus: the driver closes the sinks in order, the label images go into
        # the closed NeXus file
        outputs.append(Output("-truth", truth, TruthSink(truth, ds.is_rotation, nexus,
                                                          identifier_tag=str(ds.seeds.seed),
                                                          lattices=ds.lattices),
                              lambda f: f, needs_image=False))
    writers = {"-floatfile": (prod.write_float, prod.float32),
               "-intfile": (prod.write_int, prod.int_smv),
               "-noisefile": (prod.write_noise, prod.noise_smv),
               "-pgmfile": (prod.write_pgm, prod.pgm)}
    for flag, t in targets:
        if flag == "-cbf":
            from ..io.cbf import CbfSink
            # without '#': one frame, one named file (a panel set's per-panel files or
            # tiled frame as with '#')
            sink = CbfSink(t, single="#" not in os.path.basename(t))
            outputs.append(Output(flag, t, sink, prod.detector_counts, needs_image=False))
        else:
            w, p = writers[flag]
            outputs.append(Output(flag, t, TemplateSink(t, w), p,
                                  needs_image=flag != "-noisefile"))

    # ---- where frames run (a cluster that cannot start is a usage error: before output)
    executor = InProcess()
    if workers is not None:
        executor = DaskExecutor.local(int(workers), threads_total=parsed.threads)
    elif scheduler is not None:
        try:
            executor = DaskExecutor.connect(str(scheduler), threads_per_task=parsed.threads)
        except (OSError, ValueError, TypeError) as e:      # bad address, no scheduler
            raise _error(f"-scheduler {scheduler}: cannot connect to a Dask scheduler "
                         f"({type(e).__name__}: {e})") from None

    # ---- summary (stdout)
    from ..units import RTD
    kind = ("rotation frame" if ds.is_rotation else "still") + ("s" if n != 1 else "")
    from .. import __version__
    lines = [f"nbsim {__version__}: dataset of {n} {kind} ({plan0.detector.fpixels}x"
             f"{plan0.detector.spixels} pixels, {cfg.mode} mode)"]
    if ds.is_rotation:
        c = plan0.crystal
        lines.append(f"  frame i: phi = {c.phi0 * RTD:g} + i*{c.osc * RTD:g} deg, "
                     f"{c.phisteps} phi steps each")
    lines.append(f"  seeds: noise {ds.seeds.seed}, misset {ds.seeds.misset_seed} "
                 f"(frame i: nbsim.dataset.frame_seed(seed, i))")
    if ds.vary is not None:
        from ..dataset.vary import describe
        lines.append(f"  -vary (per frame, from frame_seed(seed, i, 'vary')): "
                     f"{describe(ds.vary)}")
    if ds.lattices > 1:
        lines.append(f"  -lattices {ds.lattices}: each still the sum of {ds.lattices} "
                     f"randomly oriented crystals (experiment i*{ds.lattices}+k)")
    shown = [f"{o.flag} {o.target}" for o in outputs]
    if blocks:
        shown.append(f"-nexus {nexus} (worker blocks of {blocks})")
    if png:
        shown.append(f"-png {png}")
    if write_hkl:
        shown.append(f"-write_hkl {write_hkl}")
    if ds.effects is not None:
        lines.extend("  " + t for t in ds.effects.lines)
    lines.append("  outputs: " + ", ".join(shown))
    lines.append(f"  job record: {record_path}")
    out.lines(lines)

    previews = []
    if png:
        from ..io.preview import montage_indices
        if blocks is None:
            previews = montage_indices(n, _PREVIEW_FRAMES)
        else:                           # the first frame of blocks (what workers return)
            starts = list(range(0, n, blocks))
            previews = [starts[k] for k in montage_indices(len(starts), _PREVIEW_FRAMES)]
    bar = _FrameProgress(err) if outs.progress else None
    t0 = time.perf_counter()
    try:
        if blocks is not None:
            from ..dataset.blocks import run_blocks
            result = run_blocks(ds, nexus, info, rec, executor, block=blocks,
                                compression=None if compression == "none" else compression,
                                outputs_spec=[(o.flag, o.target) for o in outputs],
                                outs=outs, resume=resume, progress=bar,
                                keep_previews=previews)
        else:
            result = run_frames(ds, outputs, rec, executor, info, resume=resume,
                                progress=bar, keep_previews=previews)
    except KeyboardInterrupt:
        if bar:
            bar.finish()
        _note(err, f"interrupted: {len(rec.done)} of {n} frames are complete; the same "
                   f"command with -resume finishes the job")
        return EXIT_INTERRUPTED
    finally:
        executor.close()
    if bar:
        bar.finish()
    wall = time.perf_counter() - t0
    if expt_doc is not None:
        from ..io.dials_expt import write_expt as _write_expt
        try:
            _write_expt(write_expt, expt_doc)
        except OSError as e:
            raise _error(f"-write_expt: cannot write {write_expt}: "
                         f"{e.strerror or e}") from None

    for o in outputs:
        for msg in getattr(o.sink, "notes", []):
            _note(err, f"{o.flag}: {msg}")
    if png is not None:
        # frames kept by a resumed job are rendered again for the picture (at most 9),
        # except worker-written blocks, whose pixels stay off the driver
        # the frames' file layout (a preset's tiled frame, else the stacked panels)
        images = [prod.layout.file(result.previews[i]) if i in result.previews else
                  prod.preview(ds.render(i)) for i in previews
                  if i in result.previews or blocks is None]
        try:
            from ..io.preview import write_png
        except ImportError:
            raise _error("-png needs Pillow and matplotlib: pip install -e \".[formats]\"") \
                from None
        try:
            if images:
                write_png(png, images if len(images) > 1 else images[0])
        except OSError as e:
            raise _error(f"-png: cannot write {png}: {e.strerror or e}") from None
    if write_hkl:
        from ..inputs.export import p1_writer
        from ..io._atomic import atomic_path
        try:
            with atomic_path(write_hkl) as tmp:
                p1_writer(parsed.inputs)(tmp)
        except OSError as e:
            raise _error(f"-write_hkl: cannot write {write_hkl}: {e.strerror or e}") \
                from None
    rate = result.rendered / result.seconds if result.seconds > 0 else math.inf
    out.lines([f"wrote {n} frame{'s' if n != 1 else ''} ({result.rendered} rendered, {result.kept} kept) in "
               f"{wall:.2f} s: {rate:.2f} frames/s"])
    if os.environ.get("NBSIM_TIMING"):
        per = 1e3 * result.driver_seconds / max(1, result.rendered)
        _note(err, f"timing: {result.rendered} frames in {result.seconds:.3f} s "
                   f"({rate:.2f} frames/s), driver {per:.2f} ms/frame "
                   f"(writing and recording), workers {executor.workers or 'in-process'}"
                   + (f", master file {result.finish_seconds:.3f} s"
                      if result.finish_seconds else ""))
    return EXIT_OK

