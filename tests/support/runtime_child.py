"""A real service process for the recovery and shutdown tests: opens the runtime on a data
directory, optionally submits jobs, and then either waits to be killed or runs until every
job it knows about has finished.

    python runtime_child.py DATA_DIR CONFIG_ID [DOC_ID ...] [--until-done] [--runner real]

Prints one JSON line ``{"submitted": [job ids]}`` once the submissions are accepted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from ade.models import JobStatus
from ade.runtime import open_runtime
from support import make_settings
from support.actors import ScriptRunner


async def main(args: argparse.Namespace) -> None:
    settings = make_settings(
        Path(args.data_dir),
        max_concurrency=1,
        queue_size=10,
        shutdown_grace_seconds=args.grace,
    )
    runner = None if args.runner == "real" else ScriptRunner()
    async with open_runtime(settings, runner=runner) as runtime:
        submitted = []
        for document_id in args.documents:
            job = await runtime.submit(
                workspace_id=args.workspace,
                config_version_id=args.config_id,
                document_ids=[document_id],
            )
            submitted.append(job.id)
        print(json.dumps({"submitted": submitted}), flush=True)
        if args.until_done:
            for job in await runtime.store.list_jobs(args.workspace, limit=1000):
                if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
                    await runtime.wait(args.workspace, job.id)
            return
        await trio.sleep_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir")
    parser.add_argument("config_id")
    parser.add_argument("documents", nargs="*")
    parser.add_argument("--workspace", default="ws")
    parser.add_argument("--until-done", action="store_true")
    parser.add_argument("--runner", choices=("script", "real"), default="script")
    parser.add_argument("--grace", type=float, default=5.0)
    trio.run(main, parser.parse_args())
    sys.exit(0)
