"""``edge-sdk rollout``: publish a new model version to a fleet cohort by cohort, stopping on failures."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from edge_sdk.cli.base import Command, emit_json, format_table


class RolloutCommand(Command):
    name = "rollout"
    help = "roll a signed model bundle out to a fleet over MQTT, cohort by cohort, with a failure gate"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--broker", required=True, help="mqtt://127.0.0.1:1883 (loopback only in this build)")
        parser.add_argument("--fleet", required=True, help="fleet name")
        parser.add_argument(
            "--bundle", required=True, metavar="URL", help="file:///..., http://127.0.0.1/... or a local path"
        )
        parser.add_argument(
            "--sha256", default=None, help="sha256 of the bundle file, which devices check (default: computed "
            "from a file:// bundle)",
        )  # fmt: skip
        parser.add_argument("--version", required=True, help="the bundle's version (as signed in it)")
        parser.add_argument(
            "--cohorts", default="1,10,100",
            help="cumulative shares of the fleet in percent (1,10,100: 1%% (at least one device), then 10%%, then "
            "all); with --cohort-unit count, cumulative device counts",
        )  # fmt: skip
        parser.add_argument("--cohort-unit", choices=("percent", "count"), default="percent")
        parser.add_argument("--max-failed", default="5%", help="failed share of a cohort that stops it (5%%)")
        parser.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per cohort, seconds (600)")
        parser.add_argument("--discover", type=float, default=3.0, metavar="S", help="discovery time, seconds (3)")
        parser.add_argument("--expect", type=int, default=None, metavar="N", help="wait until N devices are seen")

    def run(self, args: argparse.Namespace) -> int:
        from edge_sdk.errors import RolloutError
        from edge_sdk.fleet.agent_state import check_desired
        from edge_sdk.fleet.rollout import Rollout, RolloutPlan, parse_cohorts, parse_share

        url, sha = _bundle_url(args.bundle), args.sha256
        if sha is None:
            sha = _file_sha256(url)
        plan = RolloutPlan(
            fleet=args.fleet, version=args.version, url=url, sha256=sha.lower(),
            cohorts=parse_cohorts(args.cohorts), unit=args.cohort_unit, max_failed=parse_share(args.max_failed),
            timeout=args.timeout, discover_s=args.discover, expect=args.expect,
        )  # fmt: skip
        check_desired(plan.desired())  # the same checks a device makes, before anything is published
        t0 = time.monotonic()

        def progress(row: dict[str, Any]) -> None:
            print(f"[{time.monotonic() - t0:6.1f} s] cohort {row['cohort']} ({row['size']} devices): "
                  f"{row.get('active', 0)} active, {row.get('rolled_back', 0)} rolled back, "
                  f"{row.get('failed', 0)} failed, {row.get('pending', 0)} pending  {row['result']}",
                  file=sys.stderr, flush=True)  # fmt: skip

        report = Rollout(args.broker, plan, progress).run()
        rows = [[r["cohort"], r["size"], r.get("active", 0), r.get("rolled_back", 0), r.get("failed", 0),
                 r.get("pending", 0), r["result"]] for r in report["cohorts"]]  # fmt: skip
        print(format_table(["cohort", "devices", "active", "rolled back", "failed", "pending", "result"], rows),
              file=sys.stderr)  # fmt: skip
        r = report
        print(f"{plan.version}: {r['reached']}/{r['devices']} devices, {r['result']} ({r['elapsed_s']} s, "
              f"{r['broker_reconnects']} broker reconnects)", file=sys.stderr)  # fmt: skip
        if args.json:
            emit_json(report)
        if report["result"] != "complete":
            raise RolloutError(report["reason"])
        return 0


def _bundle_url(text: str) -> str:
    """A URL as given; a local path becomes its file:// URL (devices on this host read it there)."""
    from pathlib import Path

    return text if "://" in text else Path(text).expanduser().absolute().as_uri()


def _file_sha256(url: str) -> str:
    """sha256 of a file:// bundle; a CLIUsageError for another URL (its bytes are the devices' to fetch)."""
    import hashlib
    from urllib.parse import unquote, urlsplit

    from edge_sdk.errors import CLIUsageError

    u = urlsplit(url)
    if u.scheme != "file":
        raise CLIUsageError(f"--sha256 is needed for {url} (computed only for a local file)")
    h = hashlib.sha256()
    try:
        with open(unquote(u.path), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise CLIUsageError(f"--bundle {url}: {e.strerror or e}") from None
    return h.hexdigest()
