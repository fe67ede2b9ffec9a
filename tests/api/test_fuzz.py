"""Schemathesis against a live server: every route, stateful chains through the OpenAPI links
(submit -> job -> artifact/output/retry/cancel), a bounded number of examples. Any 5xx, any
response that breaks the document, any status the document does not declare fails the test.

Two runs against one server: every operation but the deletions (the stateful phase must reach
202 submissions), then every operation, deletions included. Phases: ``coverage`` (each
documented status, boundary and invalid values per operation) and ``stateful``; random
``fuzzing`` adds little over those for its time (a longer run: the same command with
``--phases fuzzing`` and a larger ``--max-examples``).

The service gets a prepared config and document; the test's copy of the document pins
``SubmitJob`` to them, so generated submissions are valid and the fuzzer reaches 202s and
everything linked from a job (without that, every submission is a 404 and the job routes are
only ever tried with unknown ids). Two checks are left out, each for a reason that is about the
check, not the API: ``positive_data_acceptance`` (a config package is a ``format: binary``
field, so any bytes are schema-valid while only a real zip is accepted) and
``ensure_resource_availability`` (it takes a 404 from any linked GET after a 2xx create as "the
created resource vanished"; a job's artifact and output are derived from it and are a documented
404 when the job ended without them -- cancelled by another step, say). Every 5xx, schema
violation and undocumented status still fails the test.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import trio
from support.api import make_settings, package_zip, start_service, workbook_bytes

EXAMPLES_PER_OPERATION = 5
TIME_BUDGET_SECONDS = 25
DELETE_BUDGET_SECONDS = 15


def _pinned(spec: dict[str, Any], config_id: str, document_id: str) -> dict[str, Any]:
    submit = spec["components"]["schemas"]["SubmitJob"]["properties"]
    submit["config_version_id"] = {"type": "string", "enum": [config_id]}
    submit["document_ids"] = {
        "type": "array",
        "items": {"type": "string", "enum": [document_id]},
        "minItems": 1,
        "maxItems": 1,
    }
    return spec


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is in the test extra (pyproject.toml)"
    return found


async def test_schemathesis_finds_nothing_and_reaches_every_linked_route(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", queue_size=3)
    async with trio.open_nursery() as nursery:
        service = await start_service(nursery, settings)
        async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
            config = await http.post(
                "/configs", files={"package": ("p.zip", package_zip(), "application/zip")}
            )
            document = await http.post("/documents", files={"file": ("m.xlsx", workbook_bytes())})
            spec = (await http.get(f"{service.url}/api/v1/openapi.json")).json()
        document_path = tmp_path / "openapi.json"
        document_path.write_text(
            json.dumps(_pinned(spec, config.json()["id"], document.json()["id"]))
        )
        config_path = tmp_path / "schemathesis.toml"
        config_path.write_text('[parameters]\n"path.workspace_id" = "default"\n')
        # First without the deletions, then everything: in one run the stateful phase deletes
        # the pinned config early (a link it infers from the listing), every later submission
        # is a 404, and the fuzzer never reaches a job. The second run has real ids to delete.
        operations = sum(len(item) for item in spec["paths"].values())
        deletes = sum("delete" in item for item in spec["paths"].values())
        for selection, budget, selected in (
            (("--exclude-method", "DELETE"), TIME_BUDGET_SECONDS, operations - deletes),
            ((), DELETE_BUDGET_SECONDS, operations),
        ):
            with trio.fail_after(budget + 30):
                result = await trio.run_process(
                    [
                        _schemathesis(),
                        "--config-file", str(config_path),
                        "run", str(document_path),
                        *selection,
                        "--url", service.url,
                        "--phases", "coverage,stateful",
                        "--checks", "all",
                        "--exclude-checks", "positive_data_acceptance,ensure_resource_availability",
                        "--max-examples", str(EXAMPLES_PER_OPERATION),
                        "--max-time", str(budget),
                        "--seed", "15",
                        "--workers", "1",
                        "--no-color",
                    ],
                    cwd=tmp_path,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )  # fmt: skip
            output = result.stdout.decode() + result.stderr.decode()
            failures = output[output.find("FAILURES") :][:8000] if "FAILURES" in output else output
            assert result.returncode == 0, failures[-8000:]
            assert f"{selected} selected / {operations} total" in output
            if selection:
                # The stateful phase got real jobs: submissions were accepted.
                async with httpx.AsyncClient(base_url=service.api, timeout=30) as http:
                    jobs = (await http.get("/jobs", params={"limit": 200})).json()["items"]
                assert jobs, output[-3000:]
        service.stop.set()
