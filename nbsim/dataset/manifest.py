"""The job record (a JSON sidecar) that ``-resume`` continues from.

``<output>.nbsim-job.json`` holds the flags that define the dataset (not the ones that
only say where or how fast it runs: ``-resume``, ``-workers``, ``-scheduler``, ``-threads``,
``-progress``/``-noprogress``), the resolved seeds (so a run seeded from the clock
resumes with the same seed), the number of frames and the frames complete, as ranges
(``"0-41,43"``).  The driver records a frame only after every sink has written it
(its bytes handed to the operating system), and rewrites the record atomically
(``io._atomic``) at most every 0.5 s and at the end or on an interrupt, so after a crash
or Ctrl-C the record never claims more than the files hold (and a crash re-renders at
most half a second of frames).
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Dict, Iterable, List, Optional, Sequence, Set

from ..io._atomic import atomic_write_bytes

__all__ = ["JobRecord", "job_flags", "first_difference", "format_ranges", "parse_ranges",
           "RUN_ONLY_FLAGS"]

#: flags that change where or how fast a job runs, not what it produces
RUN_ONLY_FLAGS = ("-resume", "-workers", "-scheduler", "-threads", "-noprogress",
                  "-progress")
VERSION = 1


def job_flags(argv: Sequence[str]) -> Dict[str, List[str]]:
    """Canonical flag name -> raw values (the last one given), without the run-only
    flags."""
    from ..args import FLAG_INDEX, _tokenize
    out: Dict[str, List[str]] = {}
    for flag, _vals, raw in _tokenize(list(argv)):
        if flag == "-h":
            continue
        name = FLAG_INDEX[flag].names[0]
        if name in RUN_ONLY_FLAGS:
            continue
        out[name] = [str(r) for r in raw]
    return out


def _show(flag: str, vals: Sequence[str]) -> str:
    return " ".join([flag] + list(vals))


def first_difference(recorded: Dict[str, List[str]], now: Dict[str, List[str]]) -> Optional[str]:
    """A phrase naming the first flag that differs (``None`` if none): the job's own flag
    order first, then flags only this run has."""
    for flag, vals in recorded.items():
        if flag not in now:
            return f"was made with {_show(flag, vals)}, which this run does not give"
        if list(now[flag]) != list(vals):
            return f"was made with {_show(flag, vals)}, not {_show(flag, now[flag])}"
    for flag, vals in now.items():
        if flag not in recorded:
            return f"was made without {flag} (this run gives {_show(flag, vals)})"
    return None


def format_ranges(indices: Iterable[int]) -> str:
    xs = sorted(set(int(i) for i in indices))
    parts = []
    k = 0
    while k < len(xs):
        j = k
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append(str(xs[k]) if j == k else f"{xs[k]}-{xs[j]}")
        k = j + 1
    return ",".join(parts)


def parse_ranges(text: str) -> Set[int]:
    out: Set[int] = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        a, _, b = part.partition("-")
        lo = int(a)
        hi = int(b) if b else lo
        out.update(range(lo, hi + 1))
    return out


class JobRecord:
    """The record at ``path``: ``flags``, ``seed``, ``misset_seed``, ``nframes``, ``kind``,
    ``done`` (set of 0-based frame indices)."""

    def __init__(self, path: str, flags: Dict[str, List[str]], *, kind: str, nframes: int,
                 seed: int, misset_seed: int, done: Optional[Set[int]] = None,
                 extra: Optional[dict] = None):
        self.path = str(path)
        self.flags = dict(flags)
        self.kind = kind
        self.nframes = int(nframes)
        self.seed = int(seed)
        self.misset_seed = int(misset_seed)
        self.done: Set[int] = set(done or ())
        self.extra = dict(extra or {})

    @staticmethod
    def path_for(output: str) -> str:
        """The record of a job whose first output is ``output`` (a file or a template):
        beside it, ``#`` runs removed."""
        d, name = os.path.split(str(output))
        name = name.replace("#", "") or "frames"
        return os.path.join(d, name + ".nbsim-job.json")

    @classmethod
    def load(cls, path: str) -> "JobRecord":
        """Read a record; raises OSError (missing/unreadable) or ValueError (not one)."""
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            d = json.loads(raw.decode("utf-8"))
            if d.get("nbsim_job") != VERSION:
                raise ValueError("not an nbsim job record (or another version)")
            flags = {str(k): [str(x) for x in v] for k, v in d["flags"]}
            return cls(path, flags, kind=d["kind"], nframes=d["nframes"], seed=d["seed"],
                       misset_seed=d["misset_seed"], done=parse_ranges(d.get("done", "")),
                       extra=d.get("extra", {}))
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"not a readable nbsim job record ({e})") from None

    def to_json(self) -> bytes:
        d = {"nbsim_job": VERSION, "kind": self.kind, "nframes": self.nframes,
             "seed": self.seed, "misset_seed": self.misset_seed,
             "flags": [[k, v] for k, v in self.flags.items()],
             "done": format_ranges(self.done), "ndone": len(self.done),
             "extra": self.extra}
        return (json.dumps(d, separators=(",", ":")) + "\n").encode("utf-8")

    def save(self) -> None:
        atomic_write_bytes(self.path, self.to_json())
        self._dirty = False
        self._saved_at = time.monotonic()

    def mark_done(self, indices: Iterable[int], min_interval: float = 0.0) -> None:
        """Record frames as complete (call only after their bytes are written).  The file
        is rewritten at most every ``min_interval`` seconds (then :meth:`flush` at the
        end): a crash loses at most that much finished work, never claims unwritten
        frames."""
        self.done.update(int(i) for i in indices)
        self._dirty = True
        now = time.monotonic()
        if now - getattr(self, "_saved_at", -math.inf) >= min_interval:
            self.save()

    def flush(self) -> None:
        """Write the record if frames were marked since the last write."""
        if getattr(self, "_dirty", False):
            self.save()

    @property
    def complete(self) -> bool:
        return len(self.done) >= self.nframes
