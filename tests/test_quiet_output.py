"""Runtime chatter on fd 1/2 is captured during loads and conversions; the SDK's own warnings still reach the user."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    logging.basicConfig(level=logging.WARNING, format="edge-sdk: %(message)s")
    from edge_sdk._quiet import {fn}
    with {fn}():
        os.write(2, b"native runtime chatter\\n")
        logging.getLogger("edge_sdk").warning("int8 fallback spent its budget")
        logging.getLogger("edge_sdk").info("not shown at WARNING")
    logging.getLogger("edge_sdk").warning("after")
    """
)


def _stderr(fn: str) -> str:
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(fn=fn)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_sdk_warnings_inside_a_capture_reach_stderr_in_order_and_the_chatter_does_not():
    for fn in ("native_stderr", "native_output"):  # loads / conversions
        err = _stderr(fn)
        assert "native runtime chatter" not in err, fn
        assert "edge-sdk: int8 fallback spent its budget\nedge-sdk: after\n" in err, (fn, err)
        assert "not shown" not in err
