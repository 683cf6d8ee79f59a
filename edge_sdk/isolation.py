"""Load a model once in a child process, so a native crash cannot take the caller down.

Native runtimes parse model files in C++; a hostile or corrupt file can make them
segfault or abort, which no ``try`` catches. ``probe_load`` runs the same load in
a fresh interpreter (``python -m edge_sdk.isolation``), and turns a signal, a
timeout or an error there into a typed ``edge_sdk`` error here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any, Mapping

from edge_sdk import errors
from edge_sdk.formats import ModelFile

DEFAULT_TIMEOUT_S = 300.0


def probe_load(
    model_file: ModelFile,
    backend: str,
    *,
    device: str,
    threads: int | None,
    options: Mapping[str, Any],
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Load and run the model once in a child process; raise a typed error if that fails."""
    try:
        request = json.dumps(
            {"path": str(model_file.path), "backend": backend, "device": device, "threads": threads, "options": options}
        )
    except TypeError as e:
        raise errors.BackendOptionError(f"safe=True needs JSON-serialisable backend options: {e}") from None
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edge_sdk.isolation"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise errors.ModelLoadError(
            f"loading {model_file.path.name} with {backend} did not finish in {timeout_s:.0f} s (isolated load)"
        ) from None
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        raise errors.ModelLoadError(
            f"{backend} crashed ({sig}) while loading {model_file.path.name} in an isolated process; "
            "the file is corrupt or hostile, or the runtime has a bug"
        )
    reply = _last_json_line(proc.stdout)
    if reply is None:
        raise errors.ModelLoadError(
            f"isolated load of {model_file.path.name} exited with code {proc.returncode}: "
            f"{errors.first_line(Exception(proc.stderr or 'no output'))}"
        )
    if not reply.get("ok"):
        raise errors.error_from_dict(reply, "isolated load failed")


def _last_json_line(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _child() -> int:
    request = json.loads(sys.stdin.read())
    from edge_sdk.loader import load

    try:
        with load(
            request["path"],
            backend=request["backend"],
            device=request["device"],
            threads=request["threads"],
            **request["options"],
        ) as model:
            model.warmup(1)
    except Exception as e:  # typed errors keep their class; anything else is a load failure
        print(json.dumps({"ok": False, **errors.error_to_dict(e)}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(_child())
