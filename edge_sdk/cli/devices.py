"""``edge-sdk devices``: what this machine is, which runtimes/providers/delegates/devices work, and the plan."""

from __future__ import annotations

import argparse
from typing import Any

from edge_sdk.cli.base import Command, emit_json, format_table


class DevicesCommand(Command):
    name = "devices"
    help = "show this machine's device family, accelerators, usable runtimes and the deployment plan"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--root", default="/", help="read the system description under this folder (default: / = this machine)"
        )
        parser.add_argument(
            "--profile", default=None, help="show the plan of a named profile instead of the detected one"
        )
        parser.add_argument(
            "--list-profiles", action="store_true", help="list the named profiles load(device=...) takes"
        )

    def run(self, args: argparse.Namespace) -> int:
        import devices
        from edge_sdk.errors import CLIUsageError

        if args.list_profiles:
            names = devices.profiles()
            if args.json:
                emit_json(names)
            else:
                print(format_table(["profile", "what it is"], sorted(names.items())))
            return 0
        live = args.root in ("/", "")
        runtimes = devices.RuntimeReport.from_system() if live else None
        info = devices.detect(args.root, runtimes=runtimes)
        try:
            plan = devices.plan(args.profile or info)
        except devices.UnknownProfileError as e:
            raise CLIUsageError(str(e)) from None
        usable = {
            fmt: [None if runtimes is None else runtimes.missing(t) for t in targets]
            for fmt, targets in plan.targets.items()
        }
        chosen = {fmt: _first_usable(plan.targets_for(fmt), usable[fmt]) for fmt in plan.targets}
        if args.json:
            emit_json(
                {
                    "device": info.to_dict(),
                    "runtimes": runtimes.to_dict() if runtimes else None,
                    "plan": plan.to_dict(),
                    "missing": usable,
                    "would_run_on": chosen,
                }
            )
            return 0
        _print_human(info, runtimes, plan, usable, chosen)
        return 0


def _first_usable(targets: Any, missing: list[str | None]) -> str | None:
    return next((t.describe() for t, why in zip(targets, missing) if why is None), None)


def _print_human(info: Any, runtimes: Any, plan: Any, usable: dict[str, list[str | None]], chosen: dict) -> None:
    cpu = info.cpu
    print(f"machine       {info.name}")
    print(f"family        {info.family} (profile {info.profile})")
    print(f"cpu           {cpu.arch}, {cpu.cores} cores, {cpu.model or 'unknown model'}")
    print(f"isa           {cpu.headline}  ({', '.join(cpu.isa) or '-'})")
    if info.details:
        print("details       " + ", ".join(f"{k}={v}" for k, v in info.details.items()))
    print(f"evidence      {', '.join(info.evidence) or '-'}")
    if info.accelerators:
        rows = [
            [a.kind, a.name, a.interface, "yes" if not a.missing else "no: " + "; ".join(a.missing)]
            for a in info.accelerators
        ]
        print("\n" + format_table(["accelerator", "name", "bus", "ready"], rows))
    else:
        print("accelerators  none found")
    if runtimes is not None:
        rows = [
            ["onnxruntime", runtimes.onnxruntime or "not installed", ", ".join(runtimes.ort_providers) or "-"],
            [
                "openvino",
                runtimes.openvino or "not installed",
                ", ".join(f"{k} ({v})" for k, v in runtimes.ov_devices.items()) or "-",
            ],
            [
                "litert",
                runtimes.litert or "not installed",
                ", ".join(f"{k}: {v or 'not found'}" for k, v in runtimes.delegates.items()),
            ],
        ]
        for name, why in runtimes.errors.items():
            rows.append([name, "broken", why])
        print("\n" + format_table(["runtime", "version", "providers / devices / delegates"], rows))
    print(f"\nplan [{plan.profile}]: {plan.description}")
    print(f"  prepare     {plan.format}, {plan.precision}" + (", static shapes" if plan.static_shapes else ""))
    for step in plan.steps:
        print(f"  step        {step}")
    rows = []
    for fmt, targets in plan.targets.items():
        for i, (t, why) in enumerate(zip(targets, usable[fmt])):
            state = "?" if runtimes is None else ("usable" if why is None else f"missing: {why}")
            rows.append([fmt if i == 0 else "", t.describe(), state])
    print("\n" + format_table(["model format", "target (best first)", "here"], rows))
    if runtimes is not None:
        print("\n" + "\n".join(f"device=auto runs {fmt} on: {c or 'nothing usable'}" for fmt, c in chosen.items()))
    for note in plan.notes:
        print(f"note: {note}")
