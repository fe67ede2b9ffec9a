"""Load-testing harness: drive a real ``ade serve`` with concurrent clients and check the
service's promises (no 5xx, no lost job, bounded queue, well-formed event logs, no leaked
worker), optionally across a SIGKILL of the server. See docs/loadtest.md.
"""

from __future__ import annotations

from ade.loadtest._cli import add_arguments, main, options_from_args, run_from_args
from ade.loadtest._options import CONFIG_KINDS, WORKBOOK_KINDS, LoadTestOptions, OptionsError
from ade.loadtest._report import FAIL, PASS, SKIP, Invariant, Report, format_table, report_json
from ade.loadtest._run import RECOVERY_MESSAGE, machine_facts, run_loadtest
from ade.loadtest._server import ServerProcess, ServerStartError, free_port, worker_processes
from ade.loadtest._stats import LatencySummary, percentile, summarize
from ade.loadtest._workload import Workload, build_workload

__all__ = [
    "CONFIG_KINDS",
    "FAIL",
    "PASS",
    "RECOVERY_MESSAGE",
    "SKIP",
    "WORKBOOK_KINDS",
    "Invariant",
    "LatencySummary",
    "LoadTestOptions",
    "OptionsError",
    "Report",
    "ServerProcess",
    "ServerStartError",
    "Workload",
    "add_arguments",
    "build_workload",
    "format_table",
    "free_port",
    "machine_facts",
    "main",
    "options_from_args",
    "percentile",
    "report_json",
    "run_from_args",
    "run_loadtest",
    "summarize",
    "worker_processes",
]
