"""Numba set-up: a usable on-disk cache, and a faster target set-up where it is known safe.

**Cache directory** (:func:`ensure_cache_dir`, run when :mod:`nbsim` is imported).  The
kernels are compiled with ``cache=True``; Numba keeps that cache in ``__pycache__`` beside
the sources, else in its user-wide directory, and when neither is writable (an installed
package run by another user whose home has no writable cache, e.g. ``nobody``) every
``cache=True`` function fails at import with "no locator available".  When
``NUMBA_CACHE_DIR`` is unset and the package directory is not writable, the cache goes to
``$XDG_CACHE_HOME/nbsim/numba`` (default ``~/.cache/nbsim/numba``); when that cannot be
made either, to a private temporary directory for this process only (compiled, not cached
between runs), with a one-line note on stderr.

**Target set-up without SciPy** (:func:`prepare_cpu` / :func:`prepare_cuda`).  The first
compile or cache load of a Numba kernel sets up its target (registries of
implementations).  Numba's ``np.arraymath`` (and numba-cuda's copy of it) then imports
``scipy.linalg.cython_blas`` only to decide whether ``np.dot``-like calls may use BLAS:
0.15-0.25 s, the largest part of the set-up, in every process, although nbsim's kernels
make no such call.  They set the target up with that check answered from the file system
instead (is SciPy's ``cython_blas`` installed?) without importing SciPy.  Behaviour is
unchanged: a kernel that does call ``np.dot`` still imports SciPy then, through Numba's own
``ensure_blas`` at typing time.

**Cached kernels loaded without the full set-up** (:func:`prepare_cpu`).  Numba refreshes
the whole target (0.15-0.2 s) before it loads even a cached kernel; rebuilding cached
machine code needs only the runtime's symbols.  nbsim's cached CPU kernels are loaded with
just that, and the full set-up (with the BLAS check deferred as above) runs at the first
cache miss, before the compile it serves.  Same machine code, same images; a warm ``nbsim``
process starts ~0.16 s sooner.

**Compiled and loaded kernels run the same code** (:func:`prepare_cpu`, patch
``cpu_local_linkage``).  Numba links a copy of every separately compiled callee (a parfor's
gufunc, ``@njit`` / ``register_jitable`` helpers, NumPy implementations) into the caller's
module as a ``linkonce_odr`` (ELF: weak) function, optimises that module once more (with
the fast-math flags' reassociation and contraction the copy's operation order can change)
and caches the resulting object code.  The JIT linker binds a weak symbol to the first
definition in the process: in the process that compiled the kernel that is the callee's
own library (compiled earlier, optimised once), in a process that loaded the kernel from
the cache it is the kernel's own copy (or the copy of whichever cached kernel of another
process defined that name first).  Same inputs, last bits different (float32 c-parity
pix0_custom_roi: 12005 of 20800 pixels, up to ~4 ulp).  The patch gives those copies
internal linkage once the module is optimised, just before the object code is made: a
library always calls its own copies, so every process runs exactly the cached object
code (the bits a loading process had before; the module kept for linking into later
callers is Numba's, unchanged).

These reach into Numba's private module layout, so they are **guarded**
(:func:`patch_status`): it runs only for the Numba / numba-cuda versions it was verified
with (:data:`VERIFIED`, the ranges pinned in ``pyproject.toml``) and only when the modules
it touches have the expected names; otherwise nothing is changed and the target sets itself
up the usual way (SciPy imported, slower start, same results).  ``NBSIM_NUMBA_PATCHES=0``
turns every such patch off (also those in :mod:`nbsim.kernels.cuda`).  Both functions are
idempotent and never raise.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from typing import Optional

__all__ = ["prepare_cpu", "prepare_cuda", "scipy_blas_installed", "patch_status",
           "numba_cuda_version", "require_numba_cuda", "ensure_cache_dir", "VERIFIED"]

# (first, last) minor versions each private-API patch was verified with; keep equal to the
# pins in pyproject.toml (tests/test_numba_compat.py checks both)
VERIFIED = {"numba": ((0, 68), (0, 68)), "numba-cuda": ((0, 30), (0, 30))}

_DONE = set()
_LOCK = threading.Lock()


def scipy_blas_installed() -> bool:
    """True when SciPy's ``linalg/cython_blas`` extension is present (no import)."""
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return False
    for loc in (getattr(spec, "submodule_search_locations", None) or []) if spec else []:
        d = os.path.join(loc, "linalg")
        try:
            if any(n.startswith("cython_blas.") for n in os.listdir(d)):
                return True
        except OSError:
            continue
    return False


def _deferred_blas_setup(linalg_name: str, arraymath_name: str, refresh) -> None:
    if arraymath_name in sys.modules or "scipy.linalg" in sys.modules:
        refresh()                 # nothing to save: SciPy's linalg is loaded already
        return
    linalg = importlib.import_module(linalg_name)
    real = linalg.ensure_blas

    if not callable(real):
        refresh()
        return
    hit = []

    def deferred():
        hit.append(True)
        raise ImportError("BLAS check deferred (nbsim._numba_setup)")

    linalg.ensure_blas = deferred
    try:
        refresh()
    finally:
        linalg.ensure_blas = real
        am = sys.modules.get(arraymath_name)
        if am is not None and getattr(am, "ensure_blas", None) is deferred:
            am.ensure_blas = real
        if hit and am is not None and hasattr(am, "_HAVE_BLAS"):
            am._HAVE_BLAS = scipy_blas_installed()


def _once(key: str, fn) -> None:
    if key in _DONE:
        return
    with _LOCK:
        if key in _DONE:
            return
        try:
            fn()
        except Exception:  # noqa: BLE001 - the target sets itself up on first use
            pass
        _DONE.add(key)


def _minor(version: str):
    try:
        parts = version.split(".")
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError, AttributeError):
        return None


def _in_verified(dist: str, version: Optional[str]) -> bool:
    mm = _minor(version) if version else None
    lo, hi = VERIFIED[dist]
    return mm is not None and lo <= mm <= hi


def patches_enabled() -> bool:
    """False when ``NBSIM_NUMBA_PATCHES=0`` (every private-API patch off)."""
    return os.environ.get("NBSIM_NUMBA_PATCHES", "1").strip() not in ("0", "no", "off", "")


def numba_cuda_version() -> Optional[str]:
    """Version of the installed numba-cuda package, or None (numba's own deprecated
    ``numba.cuda``, or none at all).  Reads the package metadata; imports nothing."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("numba-cuda")
    except PackageNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - broken metadata: treat as absent
        return None


def require_numba_cuda() -> None:
    """Raise ImportError (with the install line) unless the numba-cuda package is installed:
    nbsim's CUDA code is written for it, not for Numba's own deprecated ``numba.cuda``."""
    if numba_cuda_version() is None:
        raise ImportError('the CUDA backend needs the numba-cuda package: '
                          'pip install -e ".[cuda]"')


def cuda_unavailable_reason() -> Optional[str]:
    """None when numba-cuda is installed and ``numba.cuda`` imports (a GPU or the simulator
    can then run the kernels); else why not, in one line (for skips and messages).
    numba-cuda 0.30 cannot even import, simulator included, without the CUDA runtime
    library (a toolkit, or the ``numba-cuda[cu12]``/``[cu13]`` wheels)."""
    if numba_cuda_version() is None:
        return 'the numba-cuda package is not installed (pip install -e ".[cuda]")'
    try:
        from numba import cuda  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means no CUDA backend
        msg = " ".join(str(e).split())[:160]
        return f"numba.cuda does not import ({type(e).__name__}: {msg})"
    return None


def _numba_version() -> Optional[str]:
    try:
        import numba
        return str(numba.__version__)
    except Exception:  # noqa: BLE001
        return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:  # noqa: BLE001 - a parent package that fails to import: absent
        return False


def patch_status(name: str):
    """``(applies, reason)`` for one private-API patch on the installed versions.

    ``name``: ``"cpu_blas"``, ``"cpu_lazy_load"`` and ``"cpu_local_linkage"`` (this
    module, CPU target; the second also off with ``NBSIM_LAZY_CACHE_LOAD=0``),
    ``"cuda_blas"`` (this module,
    numba-cuda target), ``"cuda_ufuncs"`` and ``"cuda_inline"`` (:mod:`nbsim.kernels.cuda`).
    A patch that does not apply leaves Numba's behaviour as it is."""
    if name not in ("cpu_blas", "cpu_lazy_load", "cpu_local_linkage", "cuda_blas",
                    "cuda_ufuncs", "cuda_inline"):
        raise ValueError(f"unknown patch {name!r}")
    if not patches_enabled():
        return False, "NBSIM_NUMBA_PATCHES=0"
    nv = _numba_version()
    if name == "cpu_blas":
        if not _in_verified("numba", nv):
            return False, f"numba {nv} outside the verified range {VERIFIED['numba']}"
        if not (_has_module("numba.np.linalg") and _has_module("numba.np.arraymath")):
            return False, "numba.np.linalg / numba.np.arraymath not found"
        return True, f"numba {nv}"
    if name == "cpu_lazy_load":
        if not _in_verified("numba", nv):
            return False, f"numba {nv} outside the verified range {VERIFIED['numba']}"
        if os.environ.get("NBSIM_LAZY_CACHE_LOAD", "1").strip() in ("0", "no", "off"):
            return False, "NBSIM_LAZY_CACHE_LOAD=0"
        try:
            from numba.core import caching
            from numba.core.runtime import rtsys
            from numba.core.runtime import nrtdynmod
        except Exception:  # noqa: BLE001 - a layout this was not verified with
            return False, "numba.core.caching / numba.core.runtime not found"
        need = ("load_overload", "_load_overload", "_guard_against_spurious_io_errors")
        if not (all(hasattr(caching.Cache, a) for a in need)
                and callable(getattr(rtsys, "initialize", None))
                and callable(getattr(nrtdynmod, "create_nrt_module", None))
                and callable(getattr(nrtdynmod, "compile_nrt_functions", None))):
            return False, "numba.core.caching / runtime lack what this patch uses"
        return True, f"numba {nv}"
    if name == "cpu_local_linkage":
        if not _in_verified("numba", nv):
            return False, f"numba {nv} outside the verified range {VERIFIED['numba']}"
        try:
            import llvmlite.binding as ll
            from numba.core.codegen import CPUCodeLibrary
        except Exception:  # noqa: BLE001 - a layout this was not verified with
            return False, "numba.core.codegen / llvmlite.binding not found"
        if not (callable(getattr(CPUCodeLibrary, "_finalize_final_module", None))
                and callable(getattr(CPUCodeLibrary, "finalize", None))
                and hasattr(CPUCodeLibrary, "_get_module_for_linking")
                and hasattr(ll, "Linkage")
                and all(hasattr(ll.Linkage, a) for a in _WEAK_LINKAGES
                        + ("internal", "external"))):
            return False, "numba.core.codegen.CPUCodeLibrary lacks what this patch uses"
        return True, f"numba {nv}"
    if name in ("cuda_blas", "cuda_ufuncs", "cuda_inline"):
        cv = numba_cuda_version()
        if cv is None:
            return False, "the numba-cuda package is not installed"
        if not _in_verified("numba-cuda", cv):
            return False, (f"numba-cuda {cv} outside the verified range "
                           f"{VERIFIED['numba-cuda']}")
        need = {"cuda_blas": ("numba.cuda.np.linalg", "numba.cuda.np.arraymath",
                              "numba.cuda.descriptor"),
                "cuda_ufuncs": ("numba.cuda.ufuncs", "numba.cuda.np.npyfuncs"),
                "cuda_inline": ("numba.core.typing.templates",)}[name]
        missing = [m for m in need if not _has_module(m)]
        if missing:
            return False, f"{', '.join(missing)} not found in numba-cuda {cv}"
        if name == "cuda_inline" and not _in_verified("numba", nv):
            return False, f"numba {nv} outside the verified range {VERIFIED['numba']}"
        return True, f"numba-cuda {cv}"
    raise ValueError(f"unknown patch {name!r}")


def _refresh_cpu_target() -> None:
    """Numba's full CPU target set-up (every registry of implementations), with the BLAS
    check deferred when that patch applies."""
    from numba.core.registry import cpu_target

    def refresh():
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
    if patch_status("cpu_blas")[0]:
        _deferred_blas_setup("numba.np.linalg", "numba.np.arraymath", refresh)
    else:
        refresh()


def _install_lazy_cache_load() -> None:
    """Load nbsim's cached CPU kernels without the full target set-up.

    Numba's ``Cache.load_overload`` refreshes the target context (imports and installs
    every registry of typing and lowering implementations: ~0.16 s, the largest part of a
    warm ``nbsim`` process) before it unpickles a cached kernel, although rebuilding
    cached machine code needs only the runtime (NRT) symbols and the code generator.  For
    nbsim's own functions on the CPU target this does just that; on a cache miss (a
    compile follows) it does the full set-up first, as Numba would.  Other functions,
    other targets and a set-up already done go through Numba's own method unchanged."""
    from numba.core import caching
    from numba.core.cpu import CPUContext
    from numba.core.runtime import rtsys

    real = caching.Cache.load_overload
    if getattr(real, "_nbsim_lazy", False):
        return
    state = {"refreshed": False}

    def load_overload(self, sig, target_context):
        py_func = getattr(self, "_py_func", None)
        if (state["refreshed"] or not isinstance(target_context, CPUContext)
                or not str(getattr(py_func, "__module__", "")).startswith("nbsim.")):
            return real(self, sig, target_context)
        rtsys.initialize(target_context)          # what cached kernels link against
        cres = None
        with self._guard_against_spurious_io_errors():
            cres = self._load_overload(sig, target_context)
        if cres is None:                          # a compile follows: full set-up first
            _refresh_cpu_target()
            state["refreshed"] = True
        return cres

    load_overload._nbsim_lazy = True
    load_overload.__wrapped__ = real
    caching.Cache.load_overload = load_overload
    _install_nrt_cache()


def _nrt_cache_file(ctx) -> str:
    """Where the runtime's compiled object code is kept: Numba's cache directory (as
    :func:`ensure_cache_dir` set it) or nbsim's ``__pycache__``, keyed like Numba's own
    cache entries (versions, target triple, CPU name and features)."""
    import hashlib
    import llvmlite
    import numba
    key = repr((numba.__version__, llvmlite.__version__, sys.version_info[:2],
                ctx.codegen().magic_tuple()))
    d = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "__pycache__")
    return os.path.join(d, f"nbsim_nrt.{hashlib.sha256(key.encode()).hexdigest()[:20]}.bin")


def _install_nrt_cache() -> None:
    """Keep the object code of Numba's runtime functions between processes.

    ``rtsys.initialize`` compiles the runtime's LLVM module (NRT_incref & co.) in every
    process (~15 ms); the result depends only on the versions and the target, so it is
    cached like a kernel: loaded from object code when present, else compiled as Numba
    does (with object caching on) and saved.  Any failure falls back to Numba's compile."""
    from numba.core.runtime import nrtdynmod

    real = nrtdynmod.compile_nrt_functions
    if getattr(real, "_nbsim_cached", False):
        return

    def compile_nrt_functions(ctx):
        import pickle
        try:
            path = _nrt_cache_file(ctx)
        except Exception:  # noqa: BLE001
            return real(ctx)
        try:
            with open(path, "rb") as f:
                return ctx.codegen().unserialize_library(pickle.load(f))
        except Exception:  # noqa: BLE001 - absent or unreadable: compile it
            pass
        ir_mod, library = nrtdynmod.create_nrt_module(ctx)
        library.enable_object_caching()
        library.add_ir_module(ir_mod)
        library.finalize()
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            data = pickle.dumps(library.serialize_using_object_code(), protocol=4)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except Exception:  # noqa: BLE001 - not cached this time; still usable
            try:
                os.unlink(tmp)
            except Exception:  # noqa: BLE001
                pass
        return library

    compile_nrt_functions._nbsim_cached = True
    compile_nrt_functions.__wrapped__ = real
    nrtdynmod.compile_nrt_functions = compile_nrt_functions


def _shared_module_of(library):
    """What Numba's ``CPUCodeLibrary._get_module_for_linking`` makes of the library's final
    module (a clone, exported functions ``linkonce_odr``), taken before
    :func:`_install_local_linkage` changes that module."""
    import llvmlite.binding as ll
    mod = library._final_module
    to_fix = [fn.name for fn in mod.functions
              if not fn.is_declaration and fn.linkage == ll.Linkage.external]
    if not to_fix:
        return mod.clone()
    mod = mod.clone()
    for name in to_fix:
        mod.get_function(name).linkage = "linkonce_odr"
    return mod


_WEAK_LINKAGES = ("linkonce_odr", "weak_odr", "linkonce_any", "weak_any")


def _install_local_linkage() -> None:
    """Give the callee copies linked into a CPU library internal linkage before its object
    code is made (module docstring: compiled and loaded kernels run the same code).

    ``CPUCodeLibrary.finalize`` links each callee library's module into the library's
    final module (exported functions ``linkonce_odr``; a parfor's gufunc wrapper is
    ``weak_odr`` already), optimises it, then ``_finalize_final_module`` hands it to the
    JIT (which emits the object code that the cache stores).  Wrapped here: ``finalize``
    notes the functions the library defines itself (before linking); then, once the
    module is optimised, the module for linking is taken as Numba would take it later (so
    a caller compiled afterwards links the same thing) and every weak or link-once
    definition that came from another library becomes ``internal``.  The library's own
    functions keep their linkage (a gufunc wrapper library's wrapper is looked up by name),
    and the optimised code is not changed, only how its calls bind.  A library loaded from
    object code (its final module is empty) and a second installation go through
    unchanged."""
    import llvmlite.binding as ll
    from numba.core.codegen import CPUCodeLibrary

    real_finalize = CPUCodeLibrary.finalize
    real = CPUCodeLibrary._finalize_final_module
    if getattr(real, "_nbsim_local_linkage", False):
        return
    weak_kinds = tuple(getattr(ll.Linkage, k) for k in _WEAK_LINKAGES)

    def finalize(self):
        try:
            self._nbsim_own = frozenset(fn.name for fn in self._final_module.functions
                                        if not fn.is_declaration)
        except Exception:  # noqa: BLE001 - left as Numba makes it
            self._nbsim_own = None
        return real_finalize(self)

    def _finalize_final_module(self):
        own = getattr(self, "_nbsim_own", None)
        if own is not None:
            try:
                mod = self._final_module
                copies = [fn for fn in mod.functions
                          if not fn.is_declaration and fn.name not in own
                          and fn.linkage in weak_kinds]
                if copies:
                    if self._shared_module is None:
                        self._shared_module = _shared_module_of(self)
                    for fn in copies:
                        fn.linkage = ll.Linkage.internal
            except Exception:  # noqa: BLE001 - left as Numba made it
                pass
        return real(self)

    finalize.__wrapped__ = real_finalize
    _finalize_final_module._nbsim_local_linkage = True
    _finalize_final_module.__wrapped__ = real
    CPUCodeLibrary.finalize = finalize
    CPUCodeLibrary._finalize_final_module = _finalize_final_module


def prepare_cpu() -> None:
    """Set up Numba's CPU target for nbsim's kernels (before the first CPU kernel call or
    compile): callee copies linked with internal linkage (patch ``cpu_local_linkage``:
    compiled and loaded kernels give the same bits), the lazy cache load (patch
    ``cpu_lazy_load``) where it applies, else the full set-up now (with the BLAS check
    deferred where patch ``cpu_blas`` applies)."""
    def go():
        if patch_status("cpu_local_linkage")[0]:
            _install_local_linkage()
        if patch_status("cpu_lazy_load")[0]:
            _install_lazy_cache_load()
        elif patch_status("cpu_blas")[0]:
            _refresh_cpu_target()
        # else unpatched: the target sets itself up on first use
    _once("cpu", go)


def prepare_cuda() -> None:
    """Set up numba-cuda's target (before the first kernel load)."""
    def go():
        if not patch_status("cuda_blas")[0]:
            return
        from numba.cuda.descriptor import cuda_target

        def refresh():
            cuda_target.typing_context.refresh()
            cuda_target.target_context.refresh()
        _deferred_blas_setup("numba.cuda.np.linalg", "numba.cuda.np.arraymath", refresh)
    _once("cuda", go)


# ------------------------------------------------------------------ cache directory
CACHE_NOTE: Optional[str] = None     # the note printed when no cache directory is usable


def _dir_writable(d: str) -> bool:
    """Can Numba's in-tree locator use ``d/__pycache__`` (create it, write a file)?"""
    import tempfile
    pyc = os.path.join(d, "__pycache__")
    try:
        os.makedirs(pyc, exist_ok=True)
        with tempfile.TemporaryFile(dir=pyc):
            pass
        return True
    except OSError:
        return False


def _user_cache_dir() -> Optional[str]:
    import tempfile
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    d = os.path.join(base, "nbsim", "numba")
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        with tempfile.TemporaryFile(dir=d):
            pass
        return d
    except OSError:
        return None


def ensure_cache_dir(package_dir: Optional[str] = None, stream=None) -> Optional[str]:
    """Point Numba's cache at a writable directory when the package's is not.

    Does nothing when ``NUMBA_CACHE_DIR`` is set or ``package_dir`` (default: nbsim's
    directory) has a writable ``__pycache__``.  Returns the directory chosen, or None."""
    global CACHE_NOTE
    if os.environ.get("NUMBA_CACHE_DIR"):
        return None
    if package_dir is None:
        package_dir = os.path.dirname(os.path.abspath(__file__))
    dirs = [package_dir] + [os.path.join(package_dir, sub) for sub in
                            ("kernels", "geometry", "gradients", "io")
                            if os.path.isdir(os.path.join(package_dir, sub))]
    if all(_dir_writable(d) for d in dirs):
        return None
    chosen = _user_cache_dir()
    if chosen is None:
        import tempfile
        chosen = tempfile.mkdtemp(prefix="nbsim-numba-")   # 0700, this process only
        CACHE_NOTE = (f"no writable Numba cache directory (the package directory "
                      f"{package_dir} and ~/.cache are read-only): kernels are compiled "
                      f"for this run only; set NUMBA_CACHE_DIR or XDG_CACHE_HOME to a "
                      f"writable directory to cache them")
        try:
            (stream or sys.stderr).write(f"nbsim: note: {CACHE_NOTE}\n")
        except (OSError, ValueError, AttributeError):
            pass
    # the environment variable for child processes and for Numba's config reload at each
    # compile; the config attribute for this process if Numba is already imported
    os.environ["NUMBA_CACHE_DIR"] = chosen
    cfg = sys.modules.get("numba.core.config")
    if cfg is not None:
        cfg.CACHE_DIR = chosen
    return chosen
