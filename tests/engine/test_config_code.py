"""Config code at run time: calling convention, hooks, exceptions and what may leak."""

# ruff: noqa: E501  (parametrized config snippets read best one per line)

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
from support.engine import copy_config, edit_manifest, leftovers, read_rows, write_xlsx

from ade.configs.package import load_package
from ade.engine import parse_artifact, run_engine
from ade.engine._classify import row_classifier
from ade.engine._code import load_code
from ade.engine._run import YOUNG_COLLECTION_THRESHOLD
from ade.errors import ConfigCodeError
from ade.samples.generate import write_messy_workbook


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text)


def run_on_messy(tmp_path: Path, config: Path) -> str:
    """Run ``config`` on the generated messy workbook; the artifact.json text."""
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    run_engine([source], config, tmp_path / "out")
    return (tmp_path / "out" / "artifact.json").read_text()


def test_exception_names_file_function_and_pass_but_not_the_value(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "columns" / "email.py",
        "def validate(*, values):\n    raise ValueError('bad value ' + repr(values[0]))\n",
    )
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    out = tmp_path / "out"
    with pytest.raises(ConfigCodeError) as info:
        run_engine([source], config, out)
    error = info.value
    assert error.message == (
        "config code raised ValueError in columns/email.py:validate during the validate pass"
    )
    assert error.details == {"file": "columns/email.py", "function": "validate", "pass": "validate"}
    assert "alice.smith@example.com" not in error.message
    # The traceback (which may quote values) is kept for diagnostics only.
    assert "ValueError: bad value 'alice.smith@example.com'" in error.traceback
    assert "columns/email.py" in error.traceback
    assert leftovers(out) == []


@pytest.mark.parametrize(
    ("file", "code", "pass_name", "function"),
    [
        ("row_types/header.py", "def detect_boom(*, values):\n    return 1 / 0\n", "detect", "detect_boom"),
        ("columns/phone.py", "def detect_boom(*, header):\n    raise KeyError(header)\n", "map", "detect_boom"),
        ("columns/last_name.py", "def transform(*, values):\n    return [v.upper() for v in values]\n", "transform", "transform"),
        ("hooks/audit.py", "def on_job_end(*, summary):\n    import sys\n    sys.exit(3)\n", "on_job_end", "on_job_end"),
    ],
)  # fmt: skip
def test_every_pass_reports_its_name(
    tmp_path: Path, file: str, code: str, pass_name: str, function: str
) -> None:
    config = copy_config(tmp_path)
    append(config / file, code)
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    with pytest.raises(ConfigCodeError) as info:
        run_engine([source], config, tmp_path / "out")
    assert (info.value.file, info.value.function, info.value.pass_name) == (
        file,
        function,
        pass_name,
    )
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize(
    ("file", "code", "what"),
    [
        ("columns/email.py", "def transform(*, values):\n    return values[:-1]\n",
         "returned list of 4; expected a list of 5 values"),
        ("columns/email.py", "def transform(*, values):\n    return [{'a': 1} for v in values]\n",
         "returned a value of type dict"),
        ("columns/email.py", "def validate(*, values):\n    return [{'index': 99, 'code': 'x'}]\n",
         "gave an issue that is not"),
        ("row_types/data.py", "def detect_typo(*, values):\n    return {'dta': 1.0}\n",
         "returned {'dta': float}; expected a number or a dict of row types"),
        ("row_types/data.py", "def detect_word(*, values):\n    return 'data'\n",
         "returned str; expected a number or a dict of row types"),
        ("row_types/data.py", "def detect_text(*, values):\n    return {'data': '1'}\n",
         "returned {'data': str}; expected a number or a dict of row types"),
        ("hooks/audit.py", "def on_job_start(*, inputs):\n    return 'done'\n",
         "returned str; a hook returns None, a dict or a list of dicts"),
        # Infinity would make artifact.json invalid JSON (scores and deltas are recorded).
        ("columns/phone.py", "def detect_inf(*, header):\n    return float('inf')\n",
         "returned inf; expected a finite number or a dict"),
        ("columns/phone.py", "def detect_inf(*, header):\n    return {'email': float('-inf')}\n",
         "returned {'email': float}; expected field names from manifest.json mapped to finite numbers"),
    ],
)  # fmt: skip
def test_wrong_return_shapes_are_config_errors(
    tmp_path: Path, file: str, code: str, what: str
) -> None:
    config = copy_config(tmp_path)
    append(config / file, code)
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    with pytest.raises(ConfigCodeError) as info:
        run_engine([source], config, tmp_path / "out")
    assert info.value.error_type == "TypeError"
    assert what in info.value.traceback


def test_only_declared_arguments_are_passed_and_kwargs_gets_all(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "hooks" / "audit.py").write_text(
        "def on_job_start():\n"
        "    return {'called': 'with nothing'}\n"
        "def after_mapping(*, tables, manifest):\n"
        "    return [{'tables': [t['id'] for t in tables]}, {'title': manifest['title']}]\n"
        "def on_job_end(**kwargs):\n"
        "    return {'arguments': sorted(kwargs)}\n"
    )
    append(
        config / "columns" / "phone.py",
        "SEEN = set()\n"
        "def detect_spy(*, header=None, **rest):\n"
        "    SEEN.update(rest)\n"
        "    return 0\n"
        "def detect_spy_report(*, column_index, field, table_id):\n"
        "    assert sorted(SEEN) == ['column_index', 'column_letter', 'field', 'field_type',\n"
        "        'header_parts', 'input_name', 'label', 'sheet_name', 'synonyms', 'table_id',\n"
        "        'values'], SEEN\n"
        "    return 0\n",
    )
    artifact = parse_artifact(run_on_messy(tmp_path, config))
    assert [(h.hook, h.annotations) for h in artifact.hooks] == [
        ("on_job_start", [{"called": "with nothing"}]),
        ("after_mapping", [{"tables": ["t1", "t2", "t3"]}, {"title": "Member roster"}]),
        ("on_job_end", [{"arguments": ["inputs", "manifest", "summary", "tables"]}]),
    ]


def test_on_job_end_summary_is_the_engine_result(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "hooks" / "report.py").write_text("def on_job_end(*, summary):\n    return summary\n")
    edit_manifest(config, lambda d: d.update(hooks={"on_job_end": ["hooks/report.py"]}))
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    result = run_engine([source], config, tmp_path / "out")
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    [summary] = artifact.hooks[0].annotations
    assert summary == {
        "outcome": result.outcome,
        "errors": result.errors,
        "warnings": result.warnings,
        "rows_read": 21,
        "rows_outside_tables": result.rows_outside_tables,
        "tables_found": result.tables_found,
        "tables_written": result.tables_written,
        "unrecognised_tables": 0,
        "rows_written": result.rows_written,
        "mapped_fields": list(result.mapped_fields),  # manifest order, like everywhere else
        "required_missing": list(result.required_missing),
        "issue_count": result.issue_count,
    }
    assert (result.outcome, result.errors, result.rows_outside_tables) == ("errors", 3, 0)
    assert summary["mapped_fields"][:2] == ["member_id", "first_name"]


def test_text_cut_to_excels_cell_limit_is_counted(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "columns" / "email.py",
        "def transform(*, values):\n    return [v * 40000 if v else v for v in values]\n",
    )
    artifact = parse_artifact(run_on_messy(tmp_path, config))
    [write] = [p for p in artifact.passes if p.name == "write"]
    assert write.stats["truncated_cells"] == 9  # the filled email cells: 5 + 2 + 2 in t1-t3
    rows = read_rows(tmp_path / "out" / "normalized.xlsx")
    assert len(rows[1][3]) == 32_767


def test_all_hook_points_run_in_order(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    (config / "hooks" / "order.py").write_text(
        "def on_job_start():\n    return {'n': 1}\n"
        "def after_mapping():\n    return {'n': 2}\n"
        "def after_transform(*, transforms):\n"
        "    return {'n': 3, 'changed': sum(t['changed'] for t in transforms)}\n"
        "def after_validate(*, validation):\n"
        "    return {'n': 4, 'issues': validation['issue_count']}\n"
        "def on_job_end():\n    return {'n': 5}\n"
    )
    edit_manifest(
        config,
        lambda d: d.update(
            hooks={
                name: ["hooks/order.py"]
                for name in (
                    "on_job_start",
                    "after_mapping",
                    "after_transform",
                    "after_validate",
                    "on_job_end",
                )
            }
        ),
    )
    artifact = parse_artifact(run_on_messy(tmp_path, config))
    assert [(h.hook, h.annotations) for h in artifact.hooks] == [
        ("on_job_start", [{"n": 1}]),
        ("after_mapping", [{"n": 2}]),
        ("after_transform", [{"n": 3, "changed": 33}]),
        ("after_validate", [{"n": 4, "issues": 4}]),
        ("on_job_end", [{"n": 5}]),
    ]


def test_required_field_missing_is_reported(tmp_path: Path) -> None:
    source = write_xlsx(
        tmp_path / "partial.xlsx",
        {
            "Members": [
                (1, 1, ["Member ID", "First Name", "Email"]),
                (2, 1, ["M1001", "Ann", "ann@example.com"]),
            ]
        },
    )
    config = copy_config(tmp_path)
    result = run_engine([source], config, tmp_path / "out")
    assert result.required_missing == ("last_name",)
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    assert artifact.required_missing == ["last_name"]
    assert artifact.tables[0].required_missing == ["last_name"]
    assert read_rows(tmp_path / "out" / "normalized.xlsx")[1] == (
        "M1001",
        "Ann",
        None,
        "ann@example.com",
        None,
        None,
        None,
    )


def test_validator_messages_quoting_values_are_masked(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "columns" / "email.py",
        "def validate(*, values):\n"
        "    return [{'index': i, 'code': 'nope', 'message': f'{v} is not allowed'}\n"
        "            for i, v in enumerate(values) if v]\n",
    )
    text = run_on_messy(tmp_path, config)
    messages = {i["message"] for i in json.loads(text)["issues"] if i["code"] == "nope"}
    assert messages == {"<value> is not allowed"}
    assert "alice.smith@example.com" not in text


def test_transform_warnings_quoting_the_new_value_are_masked(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "columns" / "email.py",
        "def transform(*, values):\n"
        "    out = [v.strip().lower() if isinstance(v, str) else v for v in values]\n"
        "    return {'values': out, 'warnings': [\n"
        "        {'index': i, 'code': 'lowered', 'message': f'stored as {v}'}\n"
        "        for i, v in enumerate(out) if v]}\n",
    )
    text = run_on_messy(tmp_path, config)
    [record] = [t for t in json.loads(text)["transforms"] if t["field"] == "email"]
    assert record["warnings"] > 0
    lowered = [i for i in json.loads(text)["issues"] if i["code"] == "lowered"]
    assert len(lowered) == record["warnings"]
    assert {(w["pass_name"], w["message"]) for w in lowered} == {("transform", "stored as <value>")}
    assert "alice.smith@example.com" not in text


def test_messages_quoting_a_datetime_as_a_date_are_masked(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "columns" / "date_of_birth.py",
        "def transform(*, values):\n    return values\n"
        "def validate(*, values):\n"
        "    import datetime as dt\n"
        "    return [{'index': i, 'code': 'seen', 'message': f'{v:%Y-%m-%d} seen'}\n"
        "            for i, v in enumerate(values) if isinstance(v, dt.datetime)]\n",
    )
    text = run_on_messy(tmp_path, config)
    seen = [i for i in json.loads(text)["issues"] if i["code"] == "seen"]
    assert [(i["cell"], i["message"]) for i in seen] == [
        ("G5", "<value> seen"),  # alice's date of birth, a real date cell
        ("G16", "<value> seen"),  # grace's
    ]
    assert "1985-04-03" not in text


SENTINELS = [f"zq{n:03d}sentinel" for n in range(12)]


def test_no_cell_value_reaches_the_artifact_or_events(tmp_path: Path) -> None:
    """Unique values planted in every data cell (and in notes around the table) must appear
    nowhere in artifact.json or the progress events; header text may."""
    rows = [
        (1, 1, [f"Banner {SENTINELS[0]} export of the membership database"]),
        (3, 1, ["Member ID", "First Name", "Last Name", "Email", "Phone", "DOB", "Notes"]),
    ]
    for n in range(4):
        s = SENTINELS[1 + n * 2]
        t = SENTINELS[2 + n * 2]
        rows.append(
            (4 + n, 1, [f"M{s}", s, t, f"{s}@{t}.example", f"{t}-555", f"{s} 1990", f"{t} note"])
        )
    rows.append((8, 1, [f"Total {SENTINELS[9]}", 4]))
    rows.append((10, 1, [f"Note: {SENTINELS[10]} {SENTINELS[11]} applies to this list"]))
    source = write_xlsx(tmp_path / "secret.xlsx", {"Members": rows})
    events: list[tuple[str, dict]] = []
    run_engine(
        [source],
        copy_config(tmp_path),
        tmp_path / "out",
        on_progress=lambda e, d: events.append((e, d)),
    )
    text = (tmp_path / "out" / "artifact.json").read_text()
    artifact = parse_artifact(text)
    assert artifact.validation.issue_count > 0  # issues were reported, just without values
    events_text = json.dumps(events)
    for sentinel in SENTINELS:
        assert sentinel not in text
        assert sentinel not in events_text
    # ...while the output itself does carry the data.
    assert read_rows(tmp_path / "out" / "normalized.xlsx")[1][1] == SENTINELS[1].title()


def test_config_traceback_is_the_cause_for_diagnostics(tmp_path: Path) -> None:
    """A generic traceback printer (the worker writes one to its stderr) shows the config
    frames, because the config exception is the ConfigCodeError's cause."""
    import traceback

    config = copy_config(tmp_path)
    append(config / "columns" / "email.py", "def validate(*, values):\n    raise ValueError('x')\n")
    source = write_messy_workbook(tmp_path / "messy.xlsx")
    with pytest.raises(ConfigCodeError) as info:
        run_engine([source], config, tmp_path / "out")
    printed = "".join(traceback.format_exception(info.value))
    assert isinstance(info.value.__cause__, ValueError)
    assert 'columns/email.py", line ' in printed  # the config frame, file and line
    assert "ValueError: x" in printed
    # The text formatted while the files existed also quotes the failing source line.
    assert "raise ValueError('x')" in info.value.traceback


def test_a_table_nothing_maps_to_is_skipped_and_reported(tmp_path: Path) -> None:
    """A lookup table that the (eager) header detector accepts but no column maps to is
    reported as skipped, not written into the output."""
    config = copy_config(tmp_path)
    (config / "row_types" / "header.py").write_text(
        "def detect_text_row(*, values, non_empty, previous_row_type):\n"
        "    texts = sum(isinstance(v, str) for v in values)\n"
        "    if non_empty >= 2 and texts == non_empty and previous_row_type != 'header':\n"
        "        return {'header': 2.0, 'data': -1.5}\n"
        "    return None\n"
    )
    source = write_xlsx(
        tmp_path / "lookup.xlsx",
        {
            "Lookup": [(1, 1, ["Code", "Meaning"]), (2, 1, ["G", 1]), (3, 1, ["S", 2])],
            "Members": [
                (1, 1, ["Member ID", "First Name", "Last Name"]),
                (2, 1, ["M1001", "Ann", 3]),
            ],
        },
    )
    result = run_engine([source], config, tmp_path / "out")
    assert (result.tables_found, result.tables_written, result.rows_written) == (2, 1, 1)
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    lookup = artifact.tables[0]
    assert (lookup.sheet, lookup.range, lookup.status, lookup.skip_reason) == (
        "Lookup",
        "A1:B3",
        "skipped",
        "no column scored at or above the mapping threshold",
    )
    assert (lookup.output_first_row, lookup.output_last_row) == (None, None)
    assert [c.output_header for c in lookup.columns] == [None, None]
    assert read_rows(tmp_path / "out" / "normalized.xlsx")[1][:3] == ("M1001", "Ann", 3)


def test_row_detectors_get_each_argument_they_declare(tmp_path: Path) -> None:
    # The engine computes a row argument only when some detector declares it: each must still
    # arrive exact, whether declared by name or taken through **kwargs.
    config = copy_config(tmp_path)
    append(
        config / "row_types" / "data.py",
        "SEEN = []\n"
        "KEYS = set()\n"
        "def detect_spy(*, row_number, first_column, previous_row_type, in_table, row_type):\n"
        "    SEEN.append([row_number, first_column, previous_row_type, in_table, row_type])\n"
        "def detect_spy_all(**arguments):\n"
        "    KEYS.update(arguments)\n"
        "    if arguments['row_number'] == 3:\n"
        "        SEEN.append(['non_empty', arguments['non_empty'], arguments['first_column']])\n",
    )
    append(  # a later on_job_end replaces the sample's
        config / "hooks" / "audit.py",
        "from ..row_types import data\n"
        "def on_job_end():\n"
        "    return {'seen': data.SEEN, 'keys': sorted(data.KEYS)}\n",
    )
    source = write_xlsx(
        tmp_path / "in.xlsx",
        {
            "S": [
                (1, 1, ["Members"]),
                (2, 2, ["Member ID", "First Name", "Last Name"]),
                (3, 2, ["M0001", "Ann", None, "x"]),
                (5, 3, ["Bo", "Lee"]),
            ]
        },
    )
    run_engine([source], config, tmp_path / "out")
    artifact = parse_artifact((tmp_path / "out" / "artifact.json").read_text())
    (hook,) = [h for h in artifact.hooks if h.hook == "on_job_end"]
    assert hook.annotations == [
        {
            "seen": [
                [1, 1, None, False, "data"],
                [2, 2, "other", False, "data"],
                [3, 2, "header", True, "data"],
                ["non_empty", 3, 2],
                [5, 3, "blank", True, "data"],
            ],
            "keys": [
                "field_labels", "first_column", "in_table", "input_name", "non_empty",
                "previous_row_type", "row_number", "row_type", "sheet_name", "values",
            ],
        }
    ]  # fmt: skip


@pytest.mark.parametrize("young", [700, 0])
def test_young_collections_are_rarer_during_a_run_and_the_threshold_restored(
    tmp_path: Path, young: int
) -> None:
    config = copy_config(tmp_path)
    append(
        config / "hooks" / "audit.py",
        "import gc\ndef on_job_start():\n    return {'young': gc.get_threshold()[0]}\n",
    )
    before = gc.get_threshold()
    gc.set_threshold(young, *before[1:])
    try:
        artifact = parse_artifact(run_on_messy(tmp_path, config))
        during = [h.annotations for h in artifact.hooks if h.hook == "on_job_start"]
        after = gc.get_threshold()
    finally:
        gc.set_threshold(*before)
    # 0 means the collector is off: a run must not turn it on.
    assert during == [[{"young": YOUNG_COLLECTION_THRESHOLD if young else 0}]]
    assert after == (young, *before[1:])


def test_row_votes_of_every_kind_are_summed_and_ties_go_to_the_first_type(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    append(
        config / "row_types" / "totals.py",
        "def detect_votes(*, values, row_type):\n"
        "    assert row_type == 'totals'\n"
        "    return {'int': 4, 'bool': True, 'dict': {'totals': 2, 'header': 5.5},\n"
        "            'tie': {'header': 2.5, 'totals': 2.5}, 'float': 0.25}.get(values[0])\n",
    )
    package = load_package(config)
    with load_code(package, tmp_path / "code") as code:
        classify = row_classifier(package, code, {}, "in.xlsx", "S")
        # The sample's own detectors: a lone word is -2 for data; nothing else votes.
        assert [classify(1, [word], None, False) for word in ("int", "bool", "dict", "tie")] == [
            "totals",
            "totals",
            "header",
            "header",
        ]
        assert classify(1, ["float"], None, False) == "totals"
        assert classify(1, ["nothing"], None, False) == "other"  # no vote above zero


def test_the_generated_classifier_spells_every_row_detector_argument() -> None:
    from ade.configs.package import ROW_DETECTOR_ARGS
    from ade.engine._classify import _ARGUMENT_SOURCES

    assert set(_ARGUMENT_SOURCES) == ROW_DETECTOR_ARGS
