"""``edge-sdk agent``: the device agent that keeps this device's model in the state its fleet asks for (MQTT)."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from edge_sdk.cli.base import Command


class AgentCommand(Command):
    name = "agent"
    help = "keep this device's model as its fleet asks over MQTT: signed bundles, probation, atomic slots"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--broker", required=True, help="mqtt://127.0.0.1:1883 (loopback only in this build)")
        parser.add_argument("--fleet", required=True, help="fleet name (topic level edge/v1/FLEET/...)")
        parser.add_argument("--device", required=True, help="this device's name in the fleet")
        parser.add_argument("--state-dir", required=True, help="where slots a/b, the active record and agent.json live")
        parser.add_argument(
            "--trusted-key", action="append", default=[], metavar="PUB",
            help="public key whose bundles are accepted (repeatable; default $EDGE_SDK_TRUSTED_KEYS)",
        )  # fmt: skip
        parser.add_argument(
            "--source", default=None,
            help="frames for the probation: a video file, camera, synthetic:... (default: a synthetic test pattern)",
        )  # fmt: skip
        parser.add_argument("--probation-frames", type=int, default=30, help="frames fed to both models (30)")
        parser.add_argument("--latency-factor", type=float, default=1.5, help="candidate p95 <= F x current (1.5)")
        parser.add_argument("--latency-budget-ms", type=float, default=None, help="absolute p95 budget instead")
        parser.add_argument("--min-agreement", type=float, default=0.9, help="top-1 / box agreement floor (0.9)")
        parser.add_argument("--min-cosine", type=float, default=0.98, help="output cosine floor (0.98)")
        parser.add_argument(
            "--accept-unvalidated", action="store_true",
            help="a first install (nothing live) whose bundle ships no validation figures passes on no errors alone",
        )  # fmt: skip
        parser.add_argument("--telemetry-every", type=float, default=10.0, metavar="S", help="seconds (10)")
        parser.add_argument(
            "--metrics-file", default=None,
            help="a pipeline's metrics JSON lines (edge-sdk run --metrics-file) whose fps/latency/drops to report",
        )  # fmt: skip

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.fleet.agent import Agent, state_dir_of
        from edge_sdk.fleet.agent_install import DEFAULT_SOURCE, InstallOptions
        from edge_sdk.fleet.probation import ProbationRules

        keys: list[Any] = []
        if args.trusted_key:
            from edge_sdk.fleet.keys import load_public_keys

            keys = load_public_keys(args.trusted_key)
        rules = ProbationRules(
            frames=args.probation_frames, latency_factor=args.latency_factor,
            latency_budget_ms=args.latency_budget_ms, min_agreement=args.min_agreement, min_cosine=args.min_cosine,
            require_figures=not args.accept_unvalidated,
        )  # fmt: skip
        opts = InstallOptions(state_dir_of(args.state_dir), keys, args.source or DEFAULT_SOURCE, rules)
        agent = Agent(args.broker, args.fleet, args.device, opts, telemetry_every=args.telemetry_every,
                      metrics_file=args.metrics_file)  # fmt: skip
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: agent.stop())
        agent.run()
        return 0
