"""Hooks return annotations that land in artifact.json (counts only: never cell values)."""


def on_job_start(*, inputs):
    return {"inputs": len(inputs)}


def after_mapping(*, tables):
    return {
        "tables": len(tables),
        "unmapped_columns": sum(len(t["unmapped"]) for t in tables),
    }


def on_job_end(*, summary):
    return {"rows_written": summary["rows_written"], "issues": summary["issue_count"]}
