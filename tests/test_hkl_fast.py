"""The vectorised -hkl reader gives exactly the line-by-line reader's grid, and leaves
every file it does not fully understand to it (errors keep their line numbers)."""
from pathlib import Path

import numpy as np
import pytest

from conftest import INPUTS
from nbsim.io import FormatError
from nbsim.io.hkl import _read_fast, _read_strict, read_hkl


def _same(a, b):
    assert (a.h_min, a.h_max, a.k_min, a.k_max, a.l_min, a.l_max, a.hkls, a.default_F) == \
        (b.h_min, b.h_max, b.k_min, b.k_max, b.l_min, b.l_max, b.hkls, b.default_F)
    np.testing.assert_array_equal(a.F, b.F)
    assert a.F.dtype == b.F.dtype and a.F.shape == b.F.shape


@pytest.mark.parametrize("name", ["scaled.hkl", "grid3.hkl", "grid10.hkl", "sparse.hkl",
                                  "test_pattern.hkl"])
def test_golden_inputs_read_the_same(name):
    raw = (INPUTS / name).read_bytes()
    fast = _read_fast(raw, 7.0)
    assert fast is not None
    _same(fast, _read_strict(Path(name), raw.decode("latin-1"), 7.0))


@pytest.mark.parametrize("seed", range(4))
def test_random_files_read_the_same(seed):
    """Signs, leading zeros, duplicates (the last wins), blank lines, tabs, CRLF, and F
    written in every float spelling (exponents, no leading digit, huge / tiny values)."""
    rng = np.random.default_rng(seed)
    n = 3000
    h, k, l = (rng.integers(-30, 30, n) for _ in range(3))
    F = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    lines = []
    for i in range(n):
        fmt = ["%r", "%.3f", "%.17g", "%e", "%E", "%.0f."][i % 6]
        fs = fmt % F[i] if fmt != "%r" else repr(float(F[i]))
        if i % 7 == 0 and abs(F[i]) < 1 and fmt == "%.3f":
            fs = fs.replace("0.", ".", 1)
        hs = ("+%d" % h[i]) if (i % 5 == 0 and h[i] >= 0) else ("%03d" % h[i])
        sep = "\t" if i % 3 == 0 else "  "
        lines.append(f"{sep}{hs}{sep}{k[i]} {l[i]}{sep}{fs}")
        if i % 11 == 0:
            lines.append("   ")
    text = ("\r\n" if seed % 2 else "\n").join(lines) + ("\n" if seed < 2 else "")
    raw = text.encode()
    fast = _read_fast(raw, 0.0)
    assert fast is not None
    _same(fast, _read_strict(Path("r.hkl"), text, 0.0))


@pytest.mark.parametrize("text, message", [
    ("1 2 3 4\n1 2 3.5 4\n", "r.hkl:2: Miller index '3.5' is not an integer"),
    ("1 2 3 4\n1 2 3\n", "r.hkl:2: expected 'h k l F' (4 numbers), got 3 fields"),
    ("1 2 3 4 5\n", "r.hkl:1: expected 'h k l F' (4 numbers), got 5 fields"),
    ("1 2 3 4\n# comment\n", "r.hkl:2: expected"),
    ("1 2 3 1e\n", "r.hkl:1: structure factor '1e' is not a number"),
    ("1 2 1e3 4\n", "r.hkl:1: Miller index '1e3' is not an integer"),
    ("1 2 - 4\n", "r.hkl:1: Miller index '-' is not an integer"),
    ("", "r.hkl: no HKL entries"),
])
def test_files_it_does_not_take_keep_the_line_by_line_errors(text, message, tmp_path):
    p = tmp_path / "r.hkl"
    p.write_text(text)
    assert _read_fast(text.encode(), 0.0) is None
    with pytest.raises(FormatError) as e:
        read_hkl(p)
    assert str(e.value).startswith(str(tmp_path / message.split(":")[0]) + message[5:]) \
        or message in str(e.value)


def test_unusual_but_valid_spellings_go_to_the_line_by_line_reader(tmp_path):
    """nan / inf (letters), a lone CR line end, a 20-digit index: not the fast path, and
    the result is the line-by-line reader's."""
    for text in ["1 2 3 nan\n4 5 6 7\n", "1 2 3 inf\n", "1 2 3 4\r5 6 7 8\n"]:
        assert _read_fast(text.encode(), 0.0) is None
        p = tmp_path / "u.hkl"
        p.write_text(text, newline="")
        _same(read_hkl(p), _read_strict(p, text, 0.0))
    assert _read_fast(b"99999999999 1 1 4\n", 0.0) is None
