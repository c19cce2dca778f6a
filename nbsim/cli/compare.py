"""``nbsim-compare``: render nanoBragg flags with nbsim and with nanoBragg.c, and compare.

    nbsim-compare [--roi XMIN XMAX YMIN YMAX] [--threshold T] [--outdir DIR]
                  [--c-bin PATH | --c-float FILE] -- ARGS...

ARGS are nanoBragg flags (as for ``nbsim``; add ``-c_parity`` to compare with the
bug-compatible mode -- nanoBragg.c main is what the C binary runs).  nbsim renders them in
this process (no output files).  The C image comes from

* ``--c-float FILE``: a stored C float image (raw float32, or gzip of it), or
* ``--c-bin PATH`` (or the ``NB_C_BIN`` environment variable): nanoBragg is run on ARGS in a
  temporary directory with ``OMP_NUM_THREADS=1`` (the run c-parity reproduces; set
  ``NB_C_THREADS`` to change it).  Input file paths are made absolute, nbsim's own flags
  and output flags are dropped, and ``-floatfile <tmp> -intfile <tmp> -nopgm -nonoise
  -noprogress`` are appended; a dump file the run would write goes to the temporary
  directory, one it would read is passed by absolute path.

It prints the Pearson correlation, RMSE, max |diff| (also relative to max |C|), both sums
and their ratio (nbsim/C) and the run times, and writes ``summary.json`` and PNG previews
(:mod:`nbsim.io.preview`) ``c.png``, ``nbsim.png`` (asinh stretch, magma, both on the C
image's scale) and ``diff.png`` (nbsim - C, linear, coolwarm, grey = 0, red = nbsim higher)
into ``--outdir`` (default ``nbsim-compare-out``).  ``--roi`` (inclusive pixels, as
``-roi``) restricts the statistics.  The nbsim image is compared as written to
``-floatfile`` (float32).

Exit status: 0 correlation >= threshold (default 0.999); 3 below it; 2 usage errors (bad
options or ARGS, no C image source, C run failed); 4 the two images differ in size.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence, TextIO

import numpy as np

EXIT_OK, EXIT_USAGE, EXIT_BELOW, EXIT_SHAPE = 0, 2, 3, 4

USAGE = ("usage: nbsim-compare [--roi XMIN XMAX YMIN YMAX] [--threshold T] [--outdir DIR] "
         "[--c-bin PATH | --c-float FILE] -- ARGS...")

__all__ = ["main", "compare_images", "c_run_args"]


class _Usage(Exception):
    pass


class _Shape(Exception):
    pass


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None,
         stderr: Optional[TextIO] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    opts = argv[:argv.index("--")] if "--" in argv else argv
    if any(a in ("-h", "--help") for a in opts):
        out.write(USAGE + "\n\n" + __doc__.split("\n\n", 2)[2])
        return EXIT_OK
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with np.errstate(all="ignore"):
                return _run(argv, out, err)
    except _Usage as e:
        err.write(f"nbsim-compare: error: {_one_line(e)}\n")
        return EXIT_USAGE
    except _Shape as e:
        err.write(f"nbsim-compare: error: {_one_line(e)}\n")
        return EXIT_SHAPE
    except KeyboardInterrupt:
        err.write("nbsim-compare: error: interrupted\n")
        return 130
    except Exception as e:          # noqa: BLE001 - one line, never a traceback
        if os.environ.get("NBSIM_DEBUG", "") not in ("", "0"):
            raise
        err.write(f"nbsim-compare: error: unexpected {type(e).__name__}: {_one_line(e)}\n")
        return 1


def _one_line(msg) -> str:
    return " ".join(str(msg).split("\n")).strip()


def _parse(argv):
    if "--" not in argv:
        raise _Usage("missing '--' before the nanoBragg flags; " + USAGE)
    cut = argv.index("--")
    opts, args = argv[:cut], argv[cut + 1:]
    if not args:
        raise _Usage("no nanoBragg flags after '--'")
    o = {"roi": None, "threshold": 0.999, "outdir": "nbsim-compare-out", "c_bin": None,
         "c_float": None}
    i = 0

    def take(n, name):
        vals = opts[i + 1:i + 1 + n]
        if len(vals) < n:
            raise _Usage(f"{name} needs {n} value{'s' if n > 1 else ''}")
        return vals

    while i < len(opts):
        a = opts[i]
        if a == "--roi":
            vals = take(4, a)
            try:
                o["roi"] = tuple(int(v) for v in vals)
            except ValueError:
                raise _Usage(f"--roi: expected four integers, got {' '.join(vals)}") from None
            i += 5
        elif a == "--threshold":
            (v,) = take(1, a)
            try:
                o["threshold"] = float(v)
            except ValueError:
                raise _Usage(f"--threshold: expected a number, got {v!r}") from None
            if not math.isfinite(o["threshold"]):
                raise _Usage(f"--threshold: expected a finite number, got {v!r}")
            i += 2
        elif a == "--outdir":
            (o["outdir"],) = take(1, a)
            i += 2
        elif a == "--c-bin":
            (o["c_bin"],) = take(1, a)
            i += 2
        elif a == "--c-float":
            (o["c_float"],) = take(1, a)
            i += 2
        else:
            raise _Usage(f"{a}: unknown option; " + USAGE)
    if o["c_bin"] and o["c_float"]:
        raise _Usage("give --c-bin or --c-float, not both")
    if not o["c_bin"] and not o["c_float"]:
        o["c_bin"] = os.environ.get("NB_C_BIN") or None
        if not o["c_bin"]:
            raise _Usage("no C image: give --c-float FILE, --c-bin PATH or set NB_C_BIN")
    return o, args


def _run(argv, out, err) -> int:
    from ..args import ArgError, parse_args
    from ..errors import ConfigError
    from ..io.errors import FormatError
    from ..simulator import Simulator
    from ._common import config_message

    o, args = _parse(argv)
    outdir = Path(o["outdir"])

    # nbsim
    t0 = time.perf_counter()
    try:
        parsed = parse_args(args)
        sim = Simulator(parsed.config, threads=parsed.threads)
    except (ArgError, FormatError) as e:
        raise _Usage(f"nbsim: {e}") from None
    except ConfigError as e:
        raise _Usage(f"nbsim: {config_message(e, parsed)}") from None
    except ArithmeticError as e:
        raise _Usage(f"nbsim: the flags give a degenerate geometry ({e})") from None
    t1 = time.perf_counter()
    nb = np.ascontiguousarray(sim.run(), dtype=np.float32)
    t2 = time.perf_counter()
    nbsim_seconds, nbsim_render = t2 - t0, t2 - t1

    # C
    c_seconds = None
    if o["c_float"]:
        c_flat = _read_float(o["c_float"])
        c_source = str(o["c_float"])
    else:
        c_flat, c_seconds = _run_c(o["c_bin"], args, parsed)
        c_source = str(o["c_bin"])
    if c_flat.size != nb.size:
        raise _Shape(f"the C image has {c_flat.size} pixels, nbsim's {nb.shape[1]}x"
                     f"{nb.shape[0]} = {nb.size}")
    c_img = c_flat.reshape(nb.shape)

    res = compare_images(c_img, nb, roi=o["roi"])
    passed = res["correlation"] >= o["threshold"]
    summary = dict(args=list(args), mode=parsed.config.mode, shape=list(nb.shape),
                   roi=list(o["roi"]) if o["roi"] else None, threshold=o["threshold"],
                   passed=bool(passed), c_source=c_source, nbsim_seconds=nbsim_seconds,
                   nbsim_render_seconds=nbsim_render, c_seconds=c_seconds, **res)
    _report(out, summary)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        _write_outputs(outdir, c_img, nb, summary, o["roi"], err)
    except OSError as e:
        raise _Usage(f"--outdir {outdir}: {e.strerror or e}") from None
    return EXIT_OK if passed else EXIT_BELOW


def _read_float(path):
    from ..io import read_float_image
    from ..io.errors import FormatError
    try:
        return np.asarray(read_float_image(path), dtype=np.float32)
    except FileNotFoundError:
        raise _Usage(f"--c-float: cannot open {path}") from None
    except (FormatError, OSError, ValueError, EOFError) as e:
        raise _Usage(f"--c-float: {path}: {e}") from None


_OUTPUT_FLAGS = {"-floatfile", "-floatimage", "-intfile", "-intimage", "-pgmfile",
                 "-pgmimage", "-noisefile", "-noiseimage", "-pgmscale", "-dumpfile", "-dump"}
_DROP_FLAGS = {"-nonoise", "-nopgm", "-noprogress", "-progress", "-c_parity", "-device",
               "-dtype", "-threads", "-printout", "-printout_pixel"}


def c_run_args(args: Sequence[str], parsed, tmpdir: str) -> List[str]:
    """ARGS rewritten for a nanoBragg run in ``tmpdir`` (see the module doc)."""
    from ..args import FLAG_INDEX, _tokenize
    cwd = os.getcwd()
    res: List[str] = []
    for flag, _vals, toks in _tokenize(list(args)):
        f = FLAG_INDEX.get(flag)
        if f is None or flag in _OUTPUT_FLAGS or flag in _DROP_FLAGS:
            continue
        if f is not None and f.units == "file":
            toks = [os.path.join(cwd, t) for t in toks]
        res += [flag] + toks
    if parsed.hkl_file is not None:
        res += ["-dumpfile", os.path.join(tmpdir, "Fdump.bin")]
    elif parsed.used_dump is not None:
        res += ["-dumpfile", os.path.abspath(parsed.used_dump)]
    res += ["-floatfile", os.path.join(tmpdir, "c_float.bin"),
            "-intfile", os.path.join(tmpdir, "c_int.img"), "-nopgm", "-nonoise",
            "-noprogress"]
    return res


def _run_c(c_bin, args, parsed):
    exe = c_bin if os.sep in str(c_bin) else (shutil.which(c_bin) or c_bin)
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        raise _Usage(f"--c-bin: {c_bin} is not an executable file")
    with tempfile.TemporaryDirectory(prefix="nbsim-compare-") as tmp:
        cmd = [exe] + c_run_args(args, parsed, tmp)
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = os.environ.get("NB_C_THREADS", "1")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        dt = time.perf_counter() - t0
        fpath = os.path.join(tmp, "c_float.bin")
        if proc.returncode != 0 or not os.path.exists(fpath):
            tail = proc.stdout.decode("latin-1", "replace").strip().splitlines()[-1:] or [""]
            raise _Usage(f"nanoBragg failed (exit {proc.returncode}): {tail[0][:200]} "
                         f"[{' '.join(shlex.quote(c) for c in cmd)}]")
        return np.fromfile(fpath, dtype="<f4").astype(np.float32), dt


def compare_images(c_img: np.ndarray, nb_img: np.ndarray, roi=None) -> dict:
    """Statistics of nbsim vs C over the ROI (inclusive xmin xmax ymin ymax) or everything."""
    c = np.asarray(c_img, dtype=np.float64)
    n = np.asarray(nb_img, dtype=np.float64)
    if roi is not None:
        x0, x1, y0, y1 = roi
        x0, y0 = max(x0, 0), max(y0, 0)
        c = c[y0:y1 + 1, x0:x1 + 1]
        n = n[y0:y1 + 1, x0:x1 + 1]
    c = c.ravel()
    n = n.ravel()
    fin_c, fin_n = np.isfinite(c), np.isfinite(n)
    nonfinite_c, nonfinite_n = int((~fin_c).sum()), int((~fin_n).sum())
    same_nonfinite = bool(np.array_equal(~fin_c, ~fin_n) and
                          np.array_equal(np.isnan(c), np.isnan(n)) and
                          np.array_equal(c[np.isinf(c)], n[np.isinf(n)]))
    both = fin_c & fin_n
    cf, nf = c[both], n[both]
    if cf.size == 0:
        corr = 1.0 if same_nonfinite else 0.0
        rmse = maxdiff = 0.0
        maxc = 0.0
    else:
        d = nf - cf
        rmse = float(np.sqrt(np.mean(d * d)))
        maxdiff = float(np.max(np.abs(d)))
        maxc = float(np.max(np.abs(cf)))
        sc, sn = float(np.std(cf)), float(np.std(nf))
        if sc == 0.0 or sn == 0.0:
            corr = 1.0 if np.array_equal(cf, nf) else 0.0
        else:
            corr = float(np.mean((cf - cf.mean()) * (nf - nf.mean())) / (sc * sn))
            corr = min(corr, 1.0)
        if not same_nonfinite:
            corr = 0.0
    sum_c, sum_n = float(cf.sum()), float(nf.sum())
    ratio = (sum_n / sum_c) if sum_c != 0.0 else (1.0 if sum_n == 0.0 else math.inf)
    return dict(correlation=corr, rmse=rmse, max_abs_diff=maxdiff,
                max_rel_diff=(maxdiff / maxc) if maxc > 0 else (0.0 if maxdiff == 0 else
                                                                 math.inf),
                sum_c=sum_c, sum_nbsim=sum_n, sum_ratio=ratio, pixels=int(c.size),
                nonfinite_c=nonfinite_c, nonfinite_nbsim=nonfinite_n)


def _report(out, s):
    def t(v):
        return "n/a" if v is None else f"{v:.3f} s"
    lines = [
        f"images: {s['shape'][1]}x{s['shape'][0]} pixels, {s['pixels']} compared"
        + (f" (roi {' '.join(map(str, s['roi']))})" if s["roi"] else "")
        + f", mode {s['mode']}",
        f"correlation = {s['correlation']:.12f}  (threshold {s['threshold']:g}: "
        f"{'pass' if s['passed'] else 'FAIL'})",
        f"RMSE = {s['rmse']:.6g}",
        f"max |diff| = {s['max_abs_diff']:.6g}  ({s['max_rel_diff']:.3g} of max |C|)",
        f"sum C = {s['sum_c']:.10g}  sum nbsim = {s['sum_nbsim']:.10g}  "
        f"ratio = {s['sum_ratio']:.12g}",
        f"time C = {t(s['c_seconds'])}  nbsim = {t(s['nbsim_seconds'])} "
        f"(render {t(s['nbsim_render_seconds'])})",
    ]
    if s["nonfinite_c"] or s["nonfinite_nbsim"]:
        lines.append(f"non-finite pixels: C {s['nonfinite_c']}, nbsim {s['nonfinite_nbsim']}")
    out.write("\n".join(lines) + "\n")


def _write_outputs(outdir: Path, c_img, nb_img, summary, roi, err=None):
    from ..io._atomic import atomic_write_bytes
    atomic_write_bytes(outdir / "summary.json",
                       (json.dumps(_jsonable(summary), indent=1) + "\n").encode())
    try:
        from ..io.preview import stretch_params, write_png
        c = np.asarray(c_img, dtype=np.float64)
        n = np.asarray(nb_img, dtype=np.float64)
        # both images on the C image's scale, so equal images give equal pictures
        vmin, vmax, knee = stretch_params(c, "asinh")
        write_png(outdir / "c.png", c, "asinh", vmin=vmin, vmax=vmax, knee=knee)
        write_png(outdir / "nbsim.png", n, "asinh", vmin=vmin, vmax=vmax, knee=knee)
        d = np.nan_to_num(n - c, nan=0.0, posinf=0.0, neginf=0.0)
        m = float(np.max(np.abs(d))) if d.size else 0.0
        m = m if m > 0 else 1.0
        write_png(outdir / "diff.png", d, "linear", "coolwarm", vmin=-m, vmax=m)
    except ImportError as e:
        if err is not None:
            err.write(f"nbsim-compare: PNG previews skipped: {e}\n")


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return x


def console() -> None:
    """The console script's entry point: :func:`main`, then a quick exit
    (:mod:`nbsim.cli._exit`)."""
    from ._exit import exit_now
    exit_now(main())


if __name__ == "__main__":          # pragma: no cover
    console()
