"""``edge-sdk serve --print-systemd-unit [CONFIG]``: a systemd unit that runs the service at boot.

SIGTERM (systemd's stop) ends the service cleanly with exit status 0: every pipeline stops, recordings and clips are
finalised, MQTT sinks publish ``offline``; ``Restart=on-failure`` restarts it after a crash or a failed camera.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from pathlib import Path

#: where the unit goes
UNIT_PATH = "/etc/systemd/system/edge-sdk-serve.service"
#: seconds systemd waits after SIGTERM before SIGKILL (finalising a long recording or clip takes a moment)
STOP_TIMEOUT_S = 60


def unit_text(config: str | os.PathLike[str] | None, *, python: str | None = None, user: str | None = None) -> str:
    """The unit file for ``config`` (absolute paths; the working directory is the config's folder)."""
    cfg = Path(config).expanduser().resolve() if config else Path("/etc/edge-sdk/serve.yaml")
    python = python or sys.executable
    try:
        user = user or getpass.getuser()
    except (KeyError, OSError):
        user = "edge-sdk"
    cmd = " ".join(shlex.quote(str(a)) for a in (python, "-m", "edge_sdk.cli.main", "serve", cfg))
    return f"""# edge-sdk serve: save as {UNIT_PATH}, then
#   systemctl daemon-reload && systemctl enable --now edge-sdk-serve
[Unit]
Description=edge-sdk serve ({cfg.name})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
WorkingDirectory={cfg.parent}
ExecStart={cmd}
# a bearer token for a non-loopback http: address, kept out of the config (EDGE_SDK_SERVE_TOKEN=...)
EnvironmentFile=-/etc/edge-sdk/serve.env
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec={STOP_TIMEOUT_S}

[Install]
WantedBy=multi-user.target
"""
