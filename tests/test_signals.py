"""Ctrl-C (SIGINT) and SIGTERM during a render: one line, exit 130 / 143, no output file
and no temporary file (issue 13, acceptance 4)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# long enough to be rendering when the signal comes (1024^2 pixels x 144 sub-pixels x 8
# mosaic domains: many seconds on two cores), every output on
LONG_RENDER = ["-cell", "100", "100", "100", "90", "90", "90", "-default_F", "100", "-N",
               "5", "-lambda", "6.2", "-distance", "100", "-detpixels", "1024", "-pixel",
               "0.1", "-oversample", "12", "-mosaic", "1", "-mosaic_dom", "8", "-seed", "3",
               "-noprogress"]


def _interrupt(tmp_path, sig, env_extra=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NBSIM_STREAM_ROWS", None)
    env.update(env_extra)
    p = subprocess.Popen([sys.executable, "-m", "nbsim", *LONG_RENDER], cwd=tmp_path,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the summary's last line comes just before the render starts
        for raw in p.stdout:
            if b"seed:" in raw or b"water droplet size" in raw:
                break
        time.sleep(1.0)
        assert p.poll() is None, "the render ended before the signal"
        p.send_signal(sig)
        rest, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err.decode(), sorted(os.listdir(tmp_path))


@pytest.mark.parametrize("sig, code, text", [
    (signal.SIGINT, 130, "nbsim: error: interrupted; no output written"),
    (signal.SIGTERM, 143, "nbsim: error: terminated (SIGTERM); no output written"),
])
def test_signal_during_render_exits_clean(sig, code, text, tmp_path):
    rc, err, left = _interrupt(tmp_path, sig)
    assert rc == code, err
    assert err.splitlines() == [text]
    assert left == []                   # no output, no temporary file


def test_sigterm_during_streamed_render_leaves_no_temporary(tmp_path):
    """The streamed path has its temporary outputs open while rendering: all removed."""
    rc, err, left = _interrupt(tmp_path, signal.SIGTERM, {"NBSIM_STREAM_ROWS": "16"})
    assert rc == 143, err
    assert err.splitlines() == ["nbsim: error: terminated (SIGTERM); no output written"]
    assert left == []
