"""The extraction engine: five streaming passes from messy spreadsheets to normalized.xlsx
plus artifact.json (see ``ade.engine._run`` for the theory of operation)."""

from ade.engine._artifact import ARTIFACT_SCHEMA, Artifact, dump_artifact, parse_artifact
from ade.engine._run import (
    ARTIFACT_FILE,
    NORMALIZED_FILE,
    EngineResult,
    ProgressCallback,
    run_engine,
)

__all__ = [
    "ARTIFACT_FILE",
    "ARTIFACT_SCHEMA",
    "NORMALIZED_FILE",
    "Artifact",
    "EngineResult",
    "ProgressCallback",
    "dump_artifact",
    "parse_artifact",
    "run_engine",
]
