"""The web page in a real browser (Debian's Chromium, headless) against a real `ade serve`:
sign in, publish a config, upload a messy workbook and watch it finish live, download the
output and read its cells, read the decisions, wait out a full queue with a countdown, see a
bad file's and an oversized file's error, steer jobs from the list, and use it by keyboard and
on a narrow window.

Set ADE_UI_SCREENSHOTS=docs/ui to write the screenshots the docs show (see docs/web.md).
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from support.browser import HISTORY_WORKSPACE, Server, admin_headers

from ade.client import zip_folder
from ade.engine import run_engine
from ade.samples import ROSTER_CONFIG
from ade.samples.generate import write_messy_workbook

SCREENSHOTS = os.environ.get("ADE_UI_SCREENSHOTS")
TIMEOUT_MS = 30_000


def _package(sleep_seconds: float) -> bytes:
    """The roster package made slow: its hooks module sleeps when the job imports it (the job
    then holds the only worker for that long)."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(zip_folder(ROSTER_CONFIG))) as source,
        zipfile.ZipFile(buffer, "w") as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["title"] = "Slow roster"
                data = json.dumps(manifest).encode()
            elif item.filename == "hooks/audit.py":
                data = f"import time\n\ntime.sleep({sleep_seconds})\n".encode() + data
            target.writestr(item, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api, timeout=30, headers=admin_headers(server)) as client:
        yield client


def _auth_enabled(server: Server) -> bool:
    body = httpx.get(f"{server.url}/api/v1/health", timeout=30).json()
    return body.get("auth", "disabled") != "disabled"


@pytest.fixture(scope="module")
def slow_config(api: httpx.Client) -> str:
    response = api.post(
        "/configs", files={"package": ("slow.zip", _package(2.0), "application/zip")}
    )
    assert response.status_code in (200, 201), response.text
    return str(response.json()["id"])


def _occupy(api: httpx.Client, config_id: str, jobs: int) -> list[dict[str, Any]]:
    """Submit ``jobs`` slow jobs (the first runs, the next waits: a queue of 1 is then full)."""
    workbook = io.BytesIO()
    book = openpyxl.Workbook()
    book.active.append(["Member #", "First Name"])
    book.active.append([1, "x"])
    book.save(workbook)
    document = api.post("/documents", files={"file": ("hold.xlsx", workbook.getvalue())}).json()
    accepted = []
    for _ in range(jobs):
        response = api.post(
            "/jobs", json={"config_version_id": config_id, "document_ids": [document["id"]]}
        )
        assert response.status_code == 202, response.text
        accepted.append(response.json())
    return accepted


def _wait_idle(api: httpx.Client) -> None:
    """Until no job is queued or running (tests start from an idle server)."""
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        busy = [
            job
            for status in ("queued", "running")
            for job in api.get("/jobs", params={"status": status}).json()["items"]
        ]
        if not busy:
            return
        time.sleep(0.2)
    raise AssertionError("the server did not become idle")


@pytest.fixture
def page(browser: Any, server: Server, api: httpx.Client, tmp_path: Path) -> Iterator[Any]:
    _wait_idle(api)
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.goto(server.url + "/")
    # Keys are on (the default): the page asks for one, and the admin key `ade serve` stored
    # in its data dir signs in; every later request and websocket of the page uses it.
    assert _auth_enabled(server)
    opened.get_by_label("API key").fill((server.data_dir / "admin.key").read_text().strip())
    opened.get_by_role("button", name="Sign in").click()
    opened.wait_for_selector("h1:text('Jobs')")
    yield opened
    context.close()
    assert problems == []


def _until(page: Any, expression: str, timeout: float = TIMEOUT_MS / 1000) -> None:
    """Poll a JavaScript expression until it is true. (Not wait_for_function: the page's CSP
    forbids eval, which that helper relies on; evaluate() goes through the debugger.)"""
    import time

    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        page.wait_for_timeout(100)


def _shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=False)


def test_publish_upload_watch_download_and_read_the_decisions(
    page: Any, server: Server, api: httpx.Client, slow_config: str, tmp_path: Path
) -> None:
    # Configs: a broken package is refused with its problems file by file ...
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("manifest.json", "{not json")
        archive.writestr("../escape.py", "x = 1\n")
    (tmp_path / "broken.zip").write_bytes(broken.getvalue())
    page.get_by_role("link", name="Configs").click()
    page.get_by_label("Config package (.zip)").set_input_files(str(tmp_path / "broken.zip"))
    page.get_by_role("button", name="Upload and prepare").click()
    problems = page.locator("#package-problems")
    problems.wait_for()
    assert "broken.zip was not published" in problems.inner_text()
    assert problems.locator("dt").all_inner_texts() == ["../escape.py"]
    # ... and the real one is prepared and listed as the newest version.
    (tmp_path / "roster.zip").write_bytes(zip_folder(ROSTER_CONFIG))
    page.get_by_label("Config package (.zip)").set_input_files(str(tmp_path / "roster.zip"))
    page.get_by_role("button", name="Upload and prepare").click()
    page.locator("#config-result .success").wait_for()
    assert "Member roster 1.0.0" in page.locator("#config-result").inner_text()
    page.locator("#configs-table tbody tr:first-child", has_text="Member roster").wait_for()
    _shot(page, "configs")

    # A slow job holds the only worker, so ours is seen queued, then running, then done.
    holding = _occupy(api, slow_config, 1)[0]
    workbook = write_messy_workbook(tmp_path / "messy-roster.xlsx")
    page.get_by_role("link", name="Upload and run").first.click()
    page.get_by_label("Spreadsheets (.xlsx, .xlsm, .csv)").set_input_files(str(workbook))
    selected = page.get_by_label("Config version").locator("option:checked").inner_text()
    assert selected.startswith("Member roster 1.0.0")  # the newest version by default
    page.get_by_role("button", name="Upload and run").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-z]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    assert job_id != holding["id"]
    page.locator("#job-status .status-queued").wait_for()
    # From here on nothing reloads the page: what changes arrives over the job's websocket.
    page.evaluate(
        """() => {
          window.adeSeen = [];
          const badge = document.querySelector('#job-status');
          const note = () => window.adeSeen.push(badge.textContent);
          new MutationObserver(note).observe(badge, { childList: true, subtree: true });
        }"""
    )
    events_while_queued = page.locator("#timeline li").count()
    page.locator("#job-status .status-success").wait_for()
    assert page.evaluate("window.adeSeen")[-1] == "succeeded"
    assert page.locator("#job-documents li").all_inner_texts() == [
        f"messy-roster.xlsx ({workbook.stat().st_size:,} bytes)"
    ]
    ending = page.locator("#job-ending").inner_text()
    summary = api.get(f"/jobs/{job_id}").json()["summary"]  # it travels with the ending
    # The sample has error-level issues: the page says the job finished with errors.
    assert ending == (
        f"Finished with errors: {summary['rows_written']} rows written from "
        f"{summary['tables_written']} of {summary['tables_found']} tables found; "
        f"{summary['issue_count']} issues ({summary['errors']} errors, 6 warnings). "
        "The normalized workbook is ready to download."
    )
    assert (summary["outcome"], summary["warnings"]) == ("errors", 6)
    page.locator("#passes [data-pass='write'] .pass-state:text('done')").wait_for()
    assert page.locator("#pass-progress").get_attribute("value") == "5"
    page.locator("#timeline li[data-type='finish']").wait_for()
    assert page.locator("#timeline li").count() > events_while_queued
    types = page.locator("#timeline li").evaluate_all("items => items.map(i => i.dataset.type)")
    assert types[0] == "enqueue" and types.count("pass_finished") == 5
    assert types.index("start") < types.index("pass_started") < types.index("finish")
    _shot(page, "job")

    # Download: the server's file name, and the cells of the normalized workbook.
    with page.expect_download() as downloading:
        page.get_by_role("button", name="Download normalized.xlsx").click()
    download = downloading.value
    assert download.suggested_filename == "messy-roster.normalized.xlsx"
    saved = tmp_path / "downloaded.xlsx"
    download.save_as(saved)
    assert saved.read_bytes() == api.get(f"/jobs/{job_id}/output").content
    book = openpyxl.load_workbook(saved, read_only=True)
    rows = [list(row) for row in book.worksheets[0].iter_rows(values_only=True)]
    book.close()
    artifact = api.get(f"/jobs/{job_id}/artifact").json()
    assert rows[0] == [c["header"] for c in artifact["output"]["columns"]]
    assert len(rows) == 1 + artifact["output"]["rows_written"]
    # The same cells as the engine run in-process on the same workbook with the same config.
    expected = run_engine([workbook], ROSTER_CONFIG, tmp_path / "local")
    local = openpyxl.load_workbook(expected.normalized_path, read_only=True)
    assert rows == [list(row) for row in local.worksheets[0].iter_rows(values_only=True)]
    local.close()
    assert rows[1][0] == "M10001"

    # Decisions: a mapping with its score and votes, an unmapped column and why, an issue.
    page.get_by_role("link", name="Decisions").click()
    page.locator("#tables").wait_for()
    t1 = artifact["tables"][0]
    assert page.locator("#tables tbody tr").count() == len(artifact["tables"])
    first_row = page.locator("#tables tbody tr").first.locator("td").all_inner_texts()
    assert first_row[:4] == ["t1", "messy-roster.xlsx", t1["sheet"], t1["range"]]
    mapping = page.locator(".mapping[data-table='t1'] tbody tr")
    column_b = mapping.filter(has_text="member_id").first.locator("td").all_inner_texts()
    b = next(c for c in t1["columns"] if c["field"] == "member_id")
    assert column_b[:4] == [b["letter"], b["header"], "member_id", f"{b['score']:g}"]
    assert b["rules"][0]["rule"] in column_b[4]
    locker = mapping.filter(has_text="Locker").first.locator("td").all_inner_texts()
    assert locker[2] == "unmapped"
    assert "no detector voted for any field" in locker[5]
    issue = artifact["issues"][0]
    issues = page.locator("#issues tbody tr").first.locator("td").all_inner_texts()
    assert issues[1] == issue["pass_name"]
    assert issues[4:9] == [
        str(issue["row"]),
        issue["cell"],
        issue["field"],
        issue["code"],
        issue["message"],
    ]
    accounting = page.locator("#accounting").inner_text()
    assert "Rows read" in accounting and "Instructions" in accounting
    assert "table data" in accounting and "Blank rows" in accounting
    # Never a cell value: names and e-mails of the workbook are nowhere on the page.
    text = page.locator("main").inner_text()
    for value in ("ivan@example.com", "Reyes", "judy@example.com", "Alice Smith"):
        assert value not in text
    _shot(page, "decisions")


def test_a_full_queue_shows_a_countdown_then_submits(
    page: Any, api: httpx.Client, slow_config: str, tmp_path: Path
) -> None:
    running, waiting = _occupy(api, slow_config, 2)  # one runs, one waits: the queue of 1 is full
    workbook = write_messy_workbook(tmp_path / "later.xlsx")
    page.get_by_role("link", name="Upload and run").first.click()
    page.get_by_label("Spreadsheets (.xlsx, .xlsm, .csv)").set_input_files(str(workbook))
    page.get_by_label("Config version").select_option(slow_config)
    page.get_by_role("button", name="Upload and run").click()
    notice = page.locator("#queue-full")
    notice.wait_for()
    assert "the job queue is full (1 of 1 waiting)" in notice.inner_text()
    first = int(page.locator("#retry-countdown").inner_text())
    assert first >= 1
    _shot(page, "queue-full")
    # The countdown is live: it goes down, and the retry is accepted once a slot frees up.
    if first > 1:
        _until(page, f"Number(document.querySelector('#retry-countdown')?.textContent) < {first}")
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-z]+$"), timeout=60_000)
    accepted = page.url.rsplit("/", 1)[1]
    assert accepted not in (running["id"], waiting["id"])
    jobs = api.get("/jobs", params={"limit": 200}).json()["items"]
    assert [j["id"] for j in jobs].count(accepted) == 1  # retried with one key: one job


def test_a_bad_file_and_an_oversized_file_show_the_servers_message(
    page: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "not-a-workbook.xlsx"
    bad.write_bytes(b"this is not a spreadsheet\n" * 10)
    page.get_by_role("link", name="Upload and run").first.click()
    page.get_by_label("Spreadsheets (.xlsx, .xlsm, .csv)").set_input_files(str(bad))
    page.get_by_role("button", name="Upload and run").click()
    page.wait_for_url(re.compile(r"#/jobs/[0-9a-z]+$"))
    page.locator("#job-status .status-error").wait_for()
    ending = page.locator("#job-ending").inner_text()
    assert ending.startswith("Failed: ") and "not-a-workbook.xlsx" in ending
    _shot(page, "job-failed")

    big = tmp_path / "huge.xlsx"
    big.write_bytes(os.urandom(1536 * 1024))  # over ADE_MAX_UPLOAD_MB=1
    page.get_by_role("link", name="Upload and run").first.click()
    page.get_by_label("Spreadsheets (.xlsx, .xlsm, .csv)").set_input_files([str(big), str(bad)])
    page.get_by_label("One job per file").check()
    page.get_by_role("button", name="Upload and run").click()
    refused = page.locator("#upload-status li.failed")
    refused.wait_for()
    assert " ".join(refused.inner_text().split()) == (
        "Not uploaded: huge.xlsx — 413 payload_too_large: "
        "the upload is larger than the limit of 1 MiB (ADE_MAX_UPLOAD_MB)"
    )
    page.locator("#upload-status a[href^='#/jobs/']").wait_for()  # the other file still ran


def test_the_jobs_list_filters_updates_live_and_steers_jobs(
    page: Any, api: httpx.Client, slow_config: str
) -> None:
    running = _occupy(api, slow_config, 1)[0]
    row = page.locator(f"tr[data-job='{running['id']}']")
    row.wait_for()  # arrived through the workspace event stream, no reload
    assert page.locator("#live-state").inner_text() == "live"
    row.get_by_role("button", name=f"Cancel job {running['id']}").click()
    page.locator(f"tr[data-job='{running['id']}'][data-status='cancelled']").wait_for()
    page.get_by_role("button", name=f"Retry job {running['id']}").click()
    retried = page.locator("tr[data-job]").first
    _until(page, f"document.querySelector('tr[data-job]')?.dataset.job !== '{running['id']}'")
    new_id = retried.get_attribute("data-job")
    assert api.get(f"/jobs/{new_id}").json()["retry_of"] == running["id"]
    page.get_by_label("Status").select_option("cancelled")
    _until(
        page,
        "[...document.querySelectorAll('tr[data-job]')]"
        ".every(r => r.dataset.status === 'cancelled')",
    )
    assert running["id"] in page.locator("#jobs-table").inner_text()


def test_paging_through_thousands_of_jobs_in_another_workspace(
    page: Any, server: Server, api: httpx.Client, history: list[str]
) -> None:
    # The order the API pages in (newest first) is the order the page must show.
    listed: list[str] = []
    cursor = None
    while True:
        body = api.get(
            f"{server.url}/api/v1/workspaces/{HISTORY_WORKSPACE}/jobs",
            params={"limit": 200, **({"cursor": cursor} if cursor else {})},
        ).json()
        listed += [job["id"] for job in body["items"]]
        if not (cursor := body["next_cursor"]):
            break
    assert sorted(listed) == sorted(history)
    history = listed
    page.get_by_label("Workspace").fill(HISTORY_WORKSPACE)
    page.get_by_role("button", name="Switch").click()
    page.locator(f"tr[data-job='{history[0]}']").wait_for()

    def shown() -> list[str]:
        return page.locator("tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")

    assert shown() == history[:50]
    assert page.locator("#page-label").inner_text() == "Page 1, 50 job(s)"
    _shot(page, "jobs")
    for number in (2, 3):
        page.get_by_role("button", name="Older →").click()
        page.locator(f"tr[data-job='{history[50 * (number - 1)]}']").wait_for()
        assert shown() == history[50 * (number - 1) : 50 * number]
    page.get_by_role("button", name="← Newer").click()
    page.locator(f"tr[data-job='{history[50]}']").wait_for()
    assert shown() == history[50:100]
    # A filter starts again at page 1 and pages within the filter.
    page.get_by_label("Status").select_option("error")
    _until(
        page,
        "[...document.querySelectorAll('tr[data-job]')].every(r => r.dataset.status === 'error')"
        " && document.querySelectorAll('tr[data-job]').length === 50",
    )
    assert page.locator("#page-label").inner_text() == "Page 1, 50 job(s)"
    assert "input 'old.xlsx' is empty (0 bytes)" in page.locator("#jobs-table").inner_text()
    # The picker remembers the workspace; the default one is one switch away.
    page.reload()
    assert page.get_by_label("Workspace").input_value() == HISTORY_WORKSPACE
    # The reloaded page has finished its start (health, sign-in state, first listing) before
    # the switch: a switch during start-up raced the start's own listing.
    page.locator(f"tr[data-job='{history[0]}']").wait_for()
    page.get_by_label("Workspace").fill("default")
    page.get_by_role("button", name="Switch").click()
    _until(page, f"!document.querySelector(\"tr[data-job='{history[0]}']\")")
    assert not set(shown()) & set(history)


def test_health_keyboard_labels_and_a_narrow_window(page: Any) -> None:
    page.get_by_role("link", name="Health").click()
    page.locator("#sandbox-layers").wait_for()
    assert page.locator("#health-status").inner_text() in ("ok", "degraded")
    assert "Waiting" in page.locator("#queue-heading + dl").inner_text()
    _shot(page, "health")

    # Every form control on every page has a label (or an aria-label).
    for name in ("Upload and run", "Jobs", "Configs", "Health"):
        page.get_by_role("link", name=name).first.click()
        page.wait_for_selector("main h1")
        unlabelled = page.evaluate(
            "[...document.querySelectorAll('input, select, textarea')]"
            ".filter(e => e.type !== 'hidden' && !e.labels?.length"
            " && !e.getAttribute('aria-label'))"
            ".map(e => e.id || e.name)"
        )
        assert unlabelled == [], name

    # Keyboard: the skip link comes first, then the navigation; Enter follows a link.
    page.reload()
    page.wait_for_selector("h1:text('Health')")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(3):
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Jobs"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    page.locator("h1:text('Upload and run')").wait_for()
    # Focus moved to the new page, so the next Tab lands on its first control.
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "files"

    # A narrow window: nothing wider than the screen except inside the scrolling tables.
    page.set_viewport_size({"width": 390, "height": 800})
    for name in ("Jobs", "Upload and run", "Configs", "Health"):
        page.get_by_role("link", name=name).first.click()
        page.wait_for_selector("main h1")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (name, width)
    _shot(page, "narrow-health")


def test_sign_in_refuses_a_wrong_key_then_a_viewer_key_sees_jobs_live(
    browser: Any, server: Server, api: httpx.Client, slow_config: str
) -> None:
    """A key made with the API (not the admin's) signs in; its websocket is authenticated too:
    a job submitted elsewhere appears in the list live and the page shows its ending."""
    created = httpx.post(
        f"{server.url}/api/v1/keys",
        json={"name": "browser viewer", "role": "viewer", "workspaces": ["default"]},
        headers=admin_headers(server),
        timeout=30,
    )
    assert created.status_code == 201, created.text
    _wait_idle(api)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        key = created.json()["token"]
        page.get_by_label("API key").fill(key[:-4] + "AAAA")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_text("That key was not accepted.").wait_for()
        assert key not in page.content()
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_selector("h1:text('Jobs')")
        page.locator("#live-state", has_text="live").wait_for()
        job = _occupy(api, slow_config, 1)[0]
        row = page.locator(f"tr[data-job='{job['id']}']")
        row.wait_for()  # over the workspace websocket, authenticated with the viewer key
        page.locator(f"tr[data-job='{job['id']}'][data-status='success']").wait_for()
        row.get_by_role("link").first.click()
        page.locator("#job-status .status-success").wait_for()
        # Its record names the admin key that submitted it: an id, never a key.
        assert (
            api.get(f"/jobs/{job['id']}").json()["submitted_by"]
            == (admin_headers(server)["Authorization"].split("_")[1])
        )
    finally:
        context.close()
