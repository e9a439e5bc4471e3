"""The operator's page at `/`, driven in headless Chromium (Debian's chromium + chromium-driver, selenium).

A real daemon in this process (PostgreSQL from conftest, the 360nrs simulator) drains two campaigns
while the browser, in a thread, works the page the way an operator does: the key, the campaign rows,
the pause button, the finder. What the page claims is checked against the API itself.
DISPATCHER_PAGE_SCREENSHOT=path also writes the screenshot there (docs/operator-page.png for the README).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from test_daemon import daemon, db, env, insert, nrs, number, run, table, until, write_config
from test_daemon_api import API_KEY, api_env, call

from dispatcher.daemon import page

__all__ = ["api_env", "env", "table"]  # fixtures, imported for pytest
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
HOSTILE = "<img src=x onerror=window.__xss=1>"
T = TypeVar("T")
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                   reason="chromium and chromium-driver are not installed (make test installs them)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1100", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        except Exception:  # a driver too slow to answer on a loaded machine: its process goes anyway
            driver.service.stop()


def config(tmp_path: Path, table: str, sim: Any, rate: float = 100, **provider: Any) -> Path:
    """Two campaigns, the API on, a provider slow enough that a campaign of thousands takes a while."""
    path = write_config(tmp_path, table, {"sms": nrs(sim, reports=False, rate=rate, batch_size=10, concurrency=2,
                                                     **provider)},
                        campaigns={"big": {"template": "Hola {name}"}, "small": {"template": "Hi {name}"}})
    path.write_text(path.read_text().replace('[http]\n', '[http]\napi_key_env = "DISPATCHER_API_KEY"\n'))
    return path


async def post(http: aiohttp.ClientSession, url: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i in range(0, len(messages), 1000):
        status, answer = await call(http, "POST", url + "/v1/messages", {"messages": messages[i:i + 1000]})
        assert status == 202, answer
        out += answer["messages"]
    return out


def get(url: str, key: str | None = API_KEY) -> tuple[int, Any, Any]:
    """A blocking GET (the browser's thread uses it to check what the page says against the API)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, r.headers, orjson.loads(body) if r.headers.get_content_type() == "application/json" \
                else body
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait(what: str, fn: Callable[[], T | None], timeout: float = 10) -> T:
    """Poll `fn` (tolerating elements replaced under it, an alert not up yet) until it returns something true; fail saying what."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except (StaleElementReferenceException, NoAlertPresentException):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def sign_in(driver: Any, url: str, key: str = API_KEY) -> None:
    driver.get(url + "/")
    field = driver.find_element(By.CSS_SELECTOR, "input[name=api_key]")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()


def sent_of(driver: Any, name: str) -> int | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-campaign="{name}"]')
    return int(rows[0].get_attribute("data-sent")) if rows else None


# -- without a browser: what the daemon serves ----------------------------------------------------------

def test_the_page_files_have_no_inline_script_and_the_script_stays_small():
    html = (page.HERE / "index.html").read_text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/page/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html, re.I)  # no inline event handlers
    assert "style=" not in html and "<style" not in html
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html + (page.HERE / "page.js").read_text())
    js = (page.HERE / "page.js").read_text()
    assert ".innerHTML" not in js and ".outerHTML" not in js and "insertAdjacentHTML" not in js and "eval(" not in js
    assert len(js.splitlines()) < 600


@run
async def test_the_page_is_served_with_a_strict_policy_and_only_its_own_files(api_env, tmp_path, table):
    async with daemon(config(tmp_path, table, api_env)) as d:
        status, headers, body = await asyncio.to_thread(get, d.url + "/", None)
        assert status == 200 and headers.get_content_type() == "text/html" and b'name="api_key"' in body
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        assert "frame-ancestors 'none'" in csp and headers["X-Content-Type-Options"] == "nosniff"
        assert "Set-Cookie" not in headers
        status, headers, body = await asyncio.to_thread(get, d.url + "/page/page.js", None)
        assert status == 200 and headers.get_content_type() == "text/javascript" and b"sessionStorage" in body
        status, _, _ = await asyncio.to_thread(get, d.url + "/page/../api.py", None)
        assert status == 404
        status, _, _ = await asyncio.to_thread(get, d.url + "/page/index.py", None)
        assert status == 404


# -- in the browser ----------------------------------------------------------------------------------------

@needs_browser
@run
async def test_a_wrong_key_is_refused_and_the_key_lives_in_session_storage(api_env, tmp_path, table, browser):
    async with daemon(config(tmp_path, table, api_env)) as d:
        def script() -> None:
            sign_in(browser, d.url, "not-the-key")
            wait("the refusal", lambda: "refused" in browser.find_element(By.ID, "login-error").text)
            assert not browser.find_element(By.ID, "main").is_displayed()
            assert browser.execute_script("return sessionStorage.length") == 0
            sign_in(browser, d.url)
            wait("the signed-in page", lambda: browser.find_element(By.ID, "main").is_displayed())
            assert browser.execute_script("return sessionStorage.getItem('dispatcher.api_key')") == API_KEY
            assert browser.execute_script("return document.cookie") == ""
            provider = wait("the provider row", lambda: browser.find_elements(By.CSS_SELECTOR, 'tr[data-provider="sms"]'))
            assert provider[0].get_attribute("data-state") == "sending"
            browser.refresh()  # the same tab keeps the key
            wait("the page after a reload", lambda: browser.find_element(By.ID, "main").is_displayed())
            browser.find_element(By.ID, "signout").click()
            assert browser.execute_script("return sessionStorage.length") == 0
            refused = [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]
            assert not refused, refused  # the page works under its own policy
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_a_hostile_message_is_found_and_shown_as_text(api_env, tmp_path, table, browser):
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        [hostile] = await post(http, d.url, [{"to": number(7), "body": HOSTILE, "key": HOSTILE, "campaign": "small"}])

        def script() -> None:
            sign_in(browser, d.url)
            wait("the signed-in page", lambda: browser.find_element(By.ID, "main").is_displayed())
            find = browser.find_element(By.CSS_SELECTOR, "input[name=find]")
            find.send_keys(HOSTILE)
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            shown = wait("the message found", lambda: browser.find_elements(By.ID, "found-message"))
            assert shown[0].get_attribute("data-id") == str(hostile["id"])
            values = [dd.text for dd in shown[0].find_elements(By.TAG_NAME, "dd")]
            assert HOSTILE in values  # the key, as its characters
            events = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#found-events td")]
            assert "queued" in events
            assert browser.find_elements(By.TAG_NAME, "img") == []
            assert browser.execute_script("return typeof window.__xss") == "undefined"
            find.clear()
            find.send_keys(str(hostile["id"]))  # by id too
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            wait("the message by id", lambda: browser.find_element(By.ID, "found-message").get_attribute("data-id")
                 == str(hostile["id"]))
            assert browser.execute_script("return typeof window.__xss") == "undefined"
            browser.get_log("browser")  # emptied: what follows is this check's
            browser.execute_script("const d = document.createElement('div'); d.innerHTML = arguments[0];"
                                   "document.body.append(d);", HOSTILE)  # markup past the page's own code
            wait("the policy's refusal", lambda: any("Content Security Policy" in e["message"]
                                                     for e in browser.get_log("browser")))
            assert browser.execute_script("return typeof window.__xss") == "undefined"  # the policy held too
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_done_when_two_campaigns_drain_big_grows_pauses_and_a_hostile_key_runs_nothing(api_env, tmp_path,
                                                                                              table, browser):
    """The issue's "Done when", and the screenshot the README shows."""
    async with daemon(config(tmp_path, table, api_env, rate=15, price=0.0075)) as d, \
            aiohttp.ClientSession() as http:
        await post(http, d.url, [{"to": number(i), "campaign": "big", "variables": {"name": f"n{i}"}}
                                 for i in range(4000)])
        await post(http, d.url, [{"to": number(10000 + i), "campaign": "small", "variables": {"name": f"s{i}"}}
                                 for i in range(400)])
        await post(http, d.url, [{"to": number(20000), "body": HOSTILE, "key": HOSTILE, "campaign": "small"}])
        shot = tmp_path / "operator-page.png"

        def script() -> None:
            sign_in(browser, d.url)
            first = wait("campaign big on the page", lambda: sent_of(browser, "big") is not None and
                         [sent_of(browser, "big")])[0]
            wait("big's data-sent growing", lambda: (sent_of(browser, "big") or 0) > first, timeout=5)
            wait("campaign small on the page", lambda: sent_of(browser, "small") is not None)
            wait("a few seconds of throughput in the chart", lambda: int(browser.find_element(
                By.ID, "chart").get_attribute("data-seconds") or 0) >= 6)
            browser.save_screenshot(str(shot))
            browser.find_element(By.CSS_SELECTOR, 'tr[data-campaign="big"] [data-action=pause]').click()
            wait("GET /v1/campaigns/big says paused",
                 lambda: get(d.url + "/v1/campaigns/big")[2].get("state") == "paused")
            wait("the row says paused", lambda: browser.find_element(
                By.CSS_SELECTOR, 'tr[data-campaign="big"]').get_attribute("data-state") == "paused")
            find = browser.find_element(By.CSS_SELECTOR, "input[name=find]")
            find.send_keys(HOSTILE)
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            wait("the hostile message", lambda: HOSTILE in browser.find_element(By.ID, "found").text)
            assert browser.execute_script("return window.__xss") is None  # undefined comes back as None
            assert browser.execute_script("return typeof window.__xss") == "undefined"
        await asyncio.to_thread(script)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("DISPATCHER_PAGE_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["DISPATCHER_PAGE_SCREENSHOT"])


@needs_browser
@run
async def test_cancels_ask_first_and_go_through_the_api(api_env, tmp_path, table, browser):
    """A dismissed confirmation changes nothing; an accepted one cancels (a campaign, then a queued message)."""
    async with daemon(config(tmp_path, table, api_env, rate=5)) as d, aiohttp.ClientSession() as http:
        await post(http, d.url, [{"to": number(i), "campaign": "big", "variables": {"name": f"n{i}"}}
                                 for i in range(2000)])
        [later] = await post(http, d.url, [{"to": number(5000), "body": "later", "key": "later-1",
                                            "not_before": "2099-01-01T00:00:00Z"}])

        def script() -> None:
            sign_in(browser, d.url)
            cancel = wait("big's cancel button", lambda: browser.find_elements(
                By.CSS_SELECTOR, 'tr[data-campaign="big"] [data-action=cancel]'))[0]
            cancel.click()
            wait("the confirmation", lambda: browser.switch_to.alert).dismiss()
            assert get(d.url + "/v1/campaigns/big")[2]["state"] == "active"
            cancel.click()
            wait("the confirmation", lambda: browser.switch_to.alert).accept()
            wait("GET /v1/campaigns/big says cancelled",
                 lambda: get(d.url + "/v1/campaigns/big")[2].get("state") == "cancelled")
            wait("the row says cancelled", lambda: browser.find_element(
                By.CSS_SELECTOR, 'tr[data-campaign="big"]').get_attribute("data-state") == "cancelled")
            find = browser.find_element(By.CSS_SELECTOR, "input[name=find]")
            find.send_keys("later-1")
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            button = wait("the message's cancel button", lambda: browser.find_elements(
                By.CSS_SELECTOR, "#found [data-action=cancel-message]"))[0]
            button.click()
            wait("the confirmation", lambda: browser.switch_to.alert).accept()
            wait("GET /v1/messages/{id} says cancelled",
                 lambda: get(f"{d.url}/v1/messages/{later['id']}")[2].get("status") == "cancelled")
            wait("the finder shows it cancelled", lambda: "cancelled" in browser.find_element(By.ID, "found").text)
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_a_provider_row_shows_its_retries_and_last_error(api_env, tmp_path, table, browser):
    api_env.config("nrs360", error_rate=0.5)  # half the requests answered 500 (360nrs: code 101), then retried
    async with daemon(config(tmp_path, table, api_env)) as d, aiohttp.ClientSession() as http:
        await post(http, d.url, [{"to": number(i), "campaign": "big", "variables": {"name": f"n{i}"}}
                                 for i in range(200)])

        def script() -> None:
            sign_in(browser, d.url)
            row = 'tr[data-provider="sms"] td'
            cells = wait("retries and a last error on the provider row", lambda: [
                c.text for c in browser.find_elements(By.CSS_SELECTOR, row)] if browser.find_elements(
                By.CSS_SELECTOR, f"{row}[data-code='101']") else None)
            assert int(cells[7].replace(",", "")) > 0 and "Internal Database error" in cells[8], cells
            provider = get(d.url + "/healthz", None)[2]["providers"][0]
            assert provider["retries"] >= int(cells[7].replace(",", "")) and provider["last_error"]["code"] == "101"
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_the_page_shows_cost_a_messages_events_and_the_newest_failures_first(api_env, postgres_dsn, tmp_path,
                                                                                    table, browser):
    long_text = "Your parcel is on its way and will arrive tomorrow between nine and two. " * 3  # 2 parts
    async with daemon(config(tmp_path, table, api_env, rate=200, price=0.01)) as d, db(postgres_dsn) as conn, \
            aiohttp.ClientSession() as http:
        sent = await post(http, d.url, [{"to": number(i), "campaign": "big", "body": long_text, "key": f"m{i}"}
                                        for i in range(30)])
        await insert(conn, table, [{"recipient": "12", "body": f"bad {i}", "campaign": "small"}
                                   for i in range(12)])  # rejected when claimed
        await until(conn, f"SELECT count(*) = 30 FROM {table} WHERE status = 'sent'")
        await until(conn, f"SELECT count(*) = 12 FROM {table} WHERE status = 'rejected'")

        def script() -> None:
            newest = get(d.url + "/v1/messages?status=failed,rejected&order=desc&limit=10")[2]["messages"]
            sign_in(browser, d.url)
            wait("big's cost: 30 messages of 2 parts at 0.01", lambda: browser.find_elements(
                By.CSS_SELECTOR, 'tr[data-campaign="big"] td[data-cost="0.6"]'))
            assert get(d.url + "/v1/campaigns/big")[2]["cost"]["sent"] == 0.6
            shown = wait("the ten newest failures", lambda: [r.get_attribute("data-id") for r in browser.find_elements(
                By.CSS_SELECTOR, "#failures tbody tr")] or None)
            assert shown == [str(m["id"]) for m in newest] and len(shown) == 10  # newest first
            assert int(shown[0]) == max(int(i) for i in shown)
            find = browser.find_element(By.CSS_SELECTOR, "input[name=find]")
            find.send_keys("m7")
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            oid = sent[7]["id"]
            events = get(f"{d.url}/v1/messages/{oid}/events")[2]["events"]
            assert [e["status"] for e in events] == ["queued", "sent"]
            rows = wait("the message's events", lambda: browser.find_elements(By.CSS_SELECTOR, "#found-events tr"))
            assert [r.get_attribute("data-event") for r in rows] == [str(e["event_id"]) for e in events]
            assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["queued", "sent"]
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_the_chart_and_the_webhook_backlog_are_the_daemons_own_counts(api_env, postgres_dsn, tmp_path, table,
                                                                             browser):
    """The chart draws GET /v1/throughput (the worker's counts a second, whole from the first look); the
    webhook backlog and age are /metrics' gauges, here with a receiver that is not there."""
    with socket.socket() as s:  # a port nobody listens on: every POST is refused, the events wait
        s.bind(("127.0.0.1", 0))
        gone = s.getsockname()[1]
    path = config(tmp_path, table, api_env, rate=200)
    path.write_text(path.read_text() + f'\n[webhooks]\nurl = "http://127.0.0.1:{gone}/hook"\n'
                    'secret_env = "DISPATCHER_HOOK_SECRET"\nbackoff_max = 0.3\ntimeout = 2\n')
    async with daemon(path) as d, db(postgres_dsn) as conn, aiohttp.ClientSession() as http:
        await post(http, d.url, [{"to": number(i), "campaign": "big", "variables": {"name": f"n{i}"}}
                                 for i in range(30)])
        await insert(conn, table, [{"recipient": "12", "body": "bad", "campaign": "small"}])  # rejected
        await until(conn, f"SELECT count(*) = 31 FROM {table} WHERE status IN ('sent', 'rejected')")
        events = await conn.fetchval(f"SELECT count(*) FROM {table.replace('outbox', 'outbox_events')}")

        def script() -> None:
            sign_in(browser, d.url)
            chart = wait("the chart with every row finished", lambda: browser.find_elements(
                By.CSS_SELECTOR, '#chart[data-sent="30"][data-failed="1"]'))[0]
            series = get(d.url + "/v1/throughput")[2]
            assert sum(series["sent"]) == 30 and sum(series["failed"]) == 1
            points = chart.find_element(By.CSS_SELECTOR, "polyline.sent").get_attribute("points").split()
            assert len(points) >= 60  # the last minute at least, from the first look

            def webhooks() -> dict[str, str] | None:
                dl = browser.find_element(By.ID, "webhooks")
                shown = dict(zip([e.text for e in dl.find_elements(By.TAG_NAME, "dt")],
                                 [e.text for e in dl.find_elements(By.TAG_NAME, "dd")], strict=True))
                return shown if shown.get("backlog") == f"{events:,}" and shown.get("oldest") not in ("—", "0 s") \
                    else None
            shown = wait("the webhook backlog: every event, none delivered", webhooks)
            assert shown["delivered"] == "0"
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_retry_failed_asks_first_and_resume_undoes_a_pause(api_env, postgres_dsn, tmp_path, table, browser):
    async with daemon(config(tmp_path, table, api_env, rate=200)) as d, db(postgres_dsn) as conn:
        await insert(conn, table, [{"recipient": number(i), "body": f"failed once {i}", "campaign": "small",
                                    "status": "failed", "code": "101", "error": "Internal Database error",
                                    "finished_at": dt.datetime.now(dt.UTC)} for i in range(5)])

        def script() -> None:
            sign_in(browser, d.url)
            row = 'tr[data-campaign="small"]'
            retry = wait("small's retry button, enabled by its failures", lambda: [
                b for b in browser.find_elements(By.CSS_SELECTOR, f"{row} [data-action=retry-failed]")
                if b.is_enabled()])[0]
            retry.click()
            wait("the confirmation", lambda: browser.switch_to.alert).dismiss()
            assert get(d.url + "/v1/campaigns/small")[2]["counts"]["failed"] == 5  # dismissed: nothing done
            retry.click()
            wait("the confirmation", lambda: browser.switch_to.alert).accept()
            wait("the notice", lambda: "retry-failed: small (5 messages)" in browser.find_element(By.ID, "notice").text)
            wait("the five sent", lambda: get(d.url + "/v1/campaigns/small")[2]["counts"]["sent"] == 5)
            browser.find_element(By.CSS_SELECTOR, f"{row} [data-action=pause]").click()
            wait("the row says paused", lambda: browser.find_element(By.CSS_SELECTOR, row).get_attribute(
                "data-state") == "paused")
            resume = browser.find_element(By.CSS_SELECTOR, f"{row} [data-action=resume]")
            wait("resume enabled", resume.is_enabled)
            resume.click()
            wait("GET /v1/campaigns/small says active", lambda: get(d.url + "/v1/campaigns/small")[2]["state"] == "active")
            wait("the row says active", lambda: browser.find_element(By.CSS_SELECTOR, row).get_attribute(
                "data-state") == "active")
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_a_slow_campaigns_answer_makes_the_page_ask_less_often(api_env, postgres_dsn, tmp_path, table, browser):
    """The campaigns' counts scan the outbox: after an answer that took 1.5 s or more the page waits ten times that
    (within 30 s) before asking again, so an open page keeps the database busy a tenth of the time at most."""
    loop = asyncio.get_running_loop()
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn:
        async def slow_once() -> int:
            """Hold the outbox until a query waits on it, then 2.5 s more. No look at the campaigns is answered
            meanwhile (they read the outbox), and the page's next one starts within about a second (its pace):
            that answer takes 1.5 s or more wherever the machine's load puts the page's timer (a hold of fixed
            length from an arbitrary moment, as before, made it as short as its last instant). A waiting
            query's text is not shown while it waits for its plan's lock, so the count is of any waiter.
            Returns the looks answered before the hold."""
            async with conn.transaction():
                await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                deadline = loop.time() + 10
                while not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                              "AND pid <> pg_backend_pid()"):
                    assert loop.time() < deadline, "nothing looked at the outbox in 10 s"
                    await asyncio.sleep(0.02)  # polling pg_stat_activity for a waiting query
                before = looks()
                await asyncio.sleep(2.5)  # the slow answer being made, not a wait for something to happen
            return before

        def looks() -> int:
            return d.api.requests[("campaigns", 200)]

        def script() -> None:
            sign_in(browser, d.url)
            start = looks()
            wait("a look a second", lambda: looks() >= start + 3, timeout=6)
            before = asyncio.run_coroutine_threadsafe(slow_once(), loop).result(15)
            slow = wait("the slow answer", lambda: looks() > before and looks(), timeout=5)
            time.sleep(6)  # the window being measured: a look a second would make six
            assert looks() - slow <= 1, looks() - slow
        await asyncio.to_thread(script)


@needs_browser
@run
async def test_hostile_codes_and_errors_in_failures_and_events_show_as_text(api_env, postgres_dsn, tmp_path, table,
                                                                             browser):
    """What a provider or an application wrote into a failure (code, error) reaches the failures table and
    the finder's events as its characters."""
    async with daemon(config(tmp_path, table, api_env)) as d, db(postgres_dsn) as conn:
        [oid] = await insert(conn, table, [{"recipient": number(3), "body": "x", "key": "hostile-failure",
                                            "not_before": dt.datetime(2099, 1, 1, tzinfo=dt.UTC)}])
        await conn.execute(f"UPDATE {table} SET status = 'failed', code = $2, error = $2, finished_at = now() "
                           "WHERE id = $1", oid, HOSTILE)  # the trigger writes the failed event with them

        def script() -> None:
            sign_in(browser, d.url)
            row = wait("the failure", lambda: browser.find_elements(By.CSS_SELECTOR, f'#failures tr[data-id="{oid}"]'))
            assert row[0].text.count(HOSTILE) == 2  # code and error, as characters
            find = browser.find_element(By.CSS_SELECTOR, "input[name=find]")
            find.send_keys("hostile-failure")
            browser.find_element(By.CSS_SELECTOR, "#find-form button[type=submit]").click()
            events = wait("the failed event", lambda: [r.text for r in browser.find_elements(
                By.CSS_SELECTOR, "#found-events tr") if "failed" in r.text])
            assert events[0].count(HOSTILE) == 2
            assert browser.find_elements(By.TAG_NAME, "img") == []
            assert browser.execute_script("return typeof window.__xss") == "undefined"
        await asyncio.to_thread(script)
