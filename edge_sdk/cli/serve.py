"""``edge-sdk serve CONFIG.yaml``: several cameras against one model as a service with an HTTP API and a dashboard.

Examples::

    edge-sdk serve door.yaml                       # one line on stderr says where the dashboard is
    edge-sdk serve door.yaml --json                # {"event": "listening", "url": ...} on stdout, then at the end
                                                   # {"event": "stopped", ...}
    edge-sdk serve --print-systemd-unit door.yaml  # a unit file that runs it at boot

Stopping: SIGTERM (systemd, Docker) and SIGINT (Ctrl-C) stop every camera cleanly (recordings and clips
finalised, MQTT status ``offline``): exit status 0 after SIGTERM, 130 after SIGINT (128 + n after another
signal), as ``edge-sdk run`` does; a second signal ends the process at once. When every camera has ended (files
without ``loop: true``) the service exits 0, or 1 when a camera failed (each failure on one stderr line).
Config reference and API: docs/serve.md.
"""

from __future__ import annotations

import argparse
import signal
import sys

from edge_sdk.cli.base import SIGNAL_EXIT, Command, add_probe_arguments, emit_json, stop_on_signals


class ServeCommand(Command):
    name = "serve"
    help = "run cameras against one model as a service: HTTP API, health, Prometheus metrics, events, dashboard"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("config", nargs="?", help="the YAML config (cameras, model, http, sinks); docs/serve.md")
        parser.add_argument("--print-systemd-unit", action="store_true",
                            help="print a systemd unit file that runs this config, and exit")  # fmt: skip
        add_probe_arguments(parser)

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.errors import CLIUsageError

        if args.print_systemd_unit:
            from edge_sdk.serve.systemd import UNIT_PATH, unit_text

            if args.config:  # a unit for a config that does not load would fail and restart every few seconds
                _require_serve_extra()
                from edge_sdk.serve.config import load_config

                load_config(args.config)
            if args.json:
                emit_json({"unit": unit_text(args.config), "install_as": UNIT_PATH})
            else:
                sys.stdout.write(unit_text(args.config))
            return 0
        if not args.config:
            raise CLIUsageError("give the config file: edge-sdk serve CONFIG.yaml (docs/serve.md has the keys)")
        _require_serve_extra()
        from edge_sdk.cli.base import probe_model
        from edge_sdk.serve.config import load_config
        from edge_sdk.serve.service import Service

        cfg = load_config(args.config)
        svc = Service(cfg, probe=lambda path: probe_model(args, path, threads=cfg.threads))
        got: list[int] = []
        restore = stop_on_signals(svc, got)
        reason = None
        try:
            svc.start()
            names = ", ".join(svc.cameras)
            print(f"edge-sdk serve: dashboard on {svc.url} ({len(svc.cameras)} camera(s): {names}; model "
                  f"{cfg.model}, task {svc.task})", file=sys.stderr, flush=True)  # fmt: skip
            if args.json:
                emit_json({"event": "listening", "url": svc.url, "streams": list(svc.cameras), "model": cfg.model,
                           "task": svc.task, "token": bool(cfg.token)}, one_line=True)  # fmt: skip
            reason = svc.wait()
        finally:
            svc.stop(reason)
            restore()
        reason = svc.stop_reason or "stop()"
        failed = {name: c.error for name, c in svc.cameras.items() if c.error}
        if got:
            code = SIGNAL_EXIT.get(signal.Signals(got[0]), 128 + got[0])
        else:
            code = 1 if failed else 0
        # each failure was said once on stderr when it happened (the service's warning), not again here
        if args.json:
            streams = {s["name"]: {k: s[k] for k in ("state", "frames", "results", "dropped", "error")}
                       for s in svc.status()}  # fmt: skip
            emit_json({"event": "stopped", "stopped_by": reason, "exit_code": code, "streams": streams,
                       "events": svc.events.last_id}, one_line=True)  # fmt: skip
        return code


def _require_serve_extra() -> None:
    """One line naming the [serve] extra when PyYAML or prometheus-client is missing."""
    import importlib.util

    from edge_sdk.errors import MissingExtraError

    for module, package in (("yaml", "PyYAML"), ("prometheus_client", "prometheus-client")):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("edge-sdk serve", "serve", package)
