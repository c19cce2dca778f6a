import gzip
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "golden"
PUBLIC = GOLDEN / "public"
INPUTS = GOLDEN / "inputs"


def golden_cases():
    return sorted(p.name for p in PUBLIC.iterdir() if p.is_dir())


def golden_args(case):
    text = (PUBLIC / case / "args.txt").read_text()
    return [t.replace("{in}", str(INPUTS)) for t in text.split()]


def golden_image(case, which="c"):
    """Reference float image (flat float32) or None; which = 'c' or 'spec'."""
    p = PUBLIC / case / f"{which}_float.bin.gz"
    if not p.exists():
        return None
    return np.frombuffer(gzip.decompress(p.read_bytes()), dtype=np.float32)


def reference_for(case, mode):
    """The image a mode must reproduce: spec_float where present for the default mode."""
    if mode == "spec":
        ref = golden_image(case, "spec")
        if ref is not None:
            return ref
    return golden_image(case, "c")


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    # the engine reads Fdump.bin from the working directory as nanoBragg does
    monkeypatch.chdir(tmp_path)
