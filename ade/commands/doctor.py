"""``ade doctor``: which sandbox layers this machine supports, and why the others are missing.

It runs the same probe the service runs at start-up (a throwaway worker confined as a job
would be), so what it prints is measured, not guessed. Exit status 0 when every layer is
available and every probe check held, 1 when some are missing (best-effort would run;
ADE_SANDBOX=strict would refuse) or a probe check failed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["doctor_command", "register"]

_START_MODES = {
    "fork": "a pre-imported template per worker forks one fully confined child per job",
    "spawn": "a fresh interpreter per job, started one job ahead as a warm standby",
}


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="show which sandbox layers this machine supports",
        description="Probe the sandbox layers (namespaces, cgroups, Landlock, seccomp, uid drop) "
        "by confining a throwaway worker, and print which apply here and why the others do not.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--bench", action="store_true", help="also measure the per-job cost of each layer"
    )
    parser.set_defaults(handler=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    from ade.commands._settings import command_settings
    from ade.sandbox import detect_layers
    from ade.serde import converter

    settings = command_settings("ade doctor")
    if settings is None:
        return 2
    report = detect_layers()
    # A probe check that failed means a layer said it applied yet the attack got through:
    # as much a reason for a non-zero status as a missing layer.
    failed = [check for check, passed in report.probe_checks if not passed]
    status = 0 if not report.missing() and not failed else 1
    start = {"mode": settings.worker_start, "nice": settings.worker_nice}
    if args.json:
        print(json.dumps({**converter.unstructure(report), "worker_start": start}, indent=2))
        return status
    width = max(len(layer.name) for layer in report.layers)
    print(f"ADE sandbox layers on this machine (ADE_SANDBOX={settings.sandbox}):")
    for layer in report.layers:
        mark = "yes" if layer.available else "NO "
        print(f"  {mark}  {layer.name:<{width}}  {layer.reason}")
    for name, note in report.notes:
        print(f"  note {name}: {note}")
    for check, passed in report.probe_checks:
        print(f"  probe {check}: {'ok' if passed else 'FAILED'}")
    missing = report.missing()
    if missing:
        names = ", ".join(layer.name for layer in missing)
        verdict = "refuses to start" if settings.sandbox == "strict" else "runs without them"
        print(f"missing: {names} — ADE_SANDBOX={settings.sandbox} {verdict}")
    else:
        print("every layer is available: ADE_SANDBOX=strict would start")
    how = _START_MODES[settings.worker_start]
    print(
        f"jobs start by ADE_WORKER_START={settings.worker_start} ({how}), "
        f"at nice {settings.worker_nice}"
    )
    if failed:
        print(f"FAILED probe checks: {', '.join(failed)} — a layer that applied did not hold")
    if args.bench:
        from ade.sandbox.bench import measure

        cost = measure(10)
        print("cost per job (median of 10, ms):")
        for step, ms in cost.worker_steps:
            print(f"  {step:<{width}}  {ms:7.3f}")
        print(f"  {'total':<{width}}  {cost.total_ms:7.3f}")
    return status
