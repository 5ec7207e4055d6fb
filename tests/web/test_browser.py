"""Each role's main flow in a real headless Chromium, against ``gateway serve`` as a process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from gateway.web import report
from gateway.web.base import CSP
from tests.e2e.conftest import Server, start_server, stop_server
from tests.web.browser import Browser, chromium, seed_artifact

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

NASTY_NAME = 'model<script>alert("n")<script><img src=x onerror=alert("i")>'
NASTY_TEXT = '</textarea><script>alert("j")</script><b onmouseover="alert(1)">red team</b>'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("gateway"))
    s.gateway("admin", "org", "create", "lab-b", "--kind", "lab")
    s.tokens["other_lab"] = s.token("lab-b", "lab", "mallory")
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def browser(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    root = tmp_path_factory.mktemp("chromium")
    downloads = root / "downloads"
    downloads.mkdir()
    driver = chromium(root / "profile", downloads)
    try:
        yield Browser(driver, server, downloads)
    finally:
        driver.quit()


def test_the_lab_approves_and_later_revokes(browser: Browser, server: Server) -> None:
    seeded = seed_artifact(server, "frontier-model-v1", "pre-deployment cyber evaluation")
    browser.sign_in("lab")
    assert browser.h1() == "Artifacts"
    browser.shot("lab-artifacts")
    browser.click_link("Requests")
    browser.click_link("Review")
    assert "pre-deployment cyber evaluation" in browser.text()
    assert "eve (agency-a)" in browser.text() and "48 hours" in browser.text()
    browser.shot("lab-request")
    hours = browser.driver.find_element(By.ID, "duration_hours")
    hours.send_keys("24")
    browser.button("Approve")
    browser.wait(lambda: "approved" in browser.h1())
    browser.click_link("frontier-model-v1")
    browser.wait(lambda: browser.h1().startswith("frontier-model-v1"))
    shown = browser.text()
    assert "active" in shown and ("ends in 1 day" in shown or "ends in 23 hours" in shown), shown
    browser.shot("lab-artifact")
    browser.button("Revoke")
    browser.wait(lambda: "revoked" in browser.text())
    grants = requests.get(
        server.url + "/v1/grants",
        params={"artifact": seeded["artifact"]},
        headers=server.auth("lab"),
        timeout=10,
    ).json()["items"]
    assert [g["state"] for g in grants] == ["revoked"]
    assert browser.console_errors() == []  # nothing refused by the CSP, no script errors


def test_the_evaluator_asks_sees_its_grant_and_the_command_to_pull(
    browser: Browser, server: Server
) -> None:
    seeded = seed_artifact(server, "preview-endpoint", "first request")
    requests.post(  # the lab turns the first one down; the evaluator asks again
        f"{server.url}/v1/access-requests/{seeded['request']}/deny",
        json={"reason": "scope unclear"},
        headers=server.auth("lab"),
        timeout=10,
    )
    browser.sign_in("eval")
    browser.click_link("preview-endpoint")
    browser.driver.find_element(By.ID, "justification").send_keys("scoped: cyber range only")
    browser.button("Request access")
    browser.wait(lambda: "pending" in browser.h1())
    request_id = browser.driver.current_url.rsplit("/", 1)[1]
    approved = requests.post(
        f"{server.url}/v1/access-requests/{request_id}/approve",
        headers=server.auth("lab"),
        timeout=10,
    )
    assert approved.status_code == 201
    browser.click_link("Grants")
    assert "active" in browser.text() and "ends in" in browser.text()
    command = browser.driver.find_element(By.CSS_SELECTOR, "pre.command").text
    assert command == f"gateway pull {seeded['artifact']} -o preview-endpoint -i evaluator.agekey"
    browser.shot("evaluator-grants")


def test_the_auditor_opens_an_entry_verifies_it_and_exports_the_review(
    browser: Browser, server: Server, tmp_path: Path
) -> None:
    seeded = seed_artifact(server, "audited-model", "evaluation")
    browser.sign_in("auditor")
    assert browser.h1() == "Audit log"
    browser.go("/ui/audit?action=access.request")
    browser.shot("auditor-log")
    browser.driver.find_elements(By.CSS_SELECTOR, "tbody a")[0].click()
    assert "✓ Inclusion verified" in browser.text()
    assert "whose checkpoint is signed by e2e.gateway/audit" in browser.text()
    browser.shot("auditor-entry")
    browser.go(f"/ui/reports/artifacts/{seeded['artifact']}")
    assert browser.driver.find_element(By.CSS_SELECTOR, "svg.timeline").is_displayed()
    browser.shot("auditor-review")
    browser.click_link("Export as one HTML file, with proofs", download=True)
    browser.wait(lambda: any(p.suffix == ".html" for p in browser.downloads.iterdir()), 30)
    exported = next(p for p in browser.downloads.iterdir() if p.suffix == ".html")
    key = requests.get(server.url + "/v1/audit/key", timeout=10).text.strip()
    verdict = report.verify_report(exported.read_bytes(), report.policy_for(key, None))
    assert verdict.subject == seeded["artifact"] and verdict.entries >= 2
    browser.go("/ui/audit/checkpoints")
    assert "Latest:" in browser.text()


def test_a_form_posted_without_its_csrf_token_is_refused(browser: Browser, server: Server) -> None:
    seeded = seed_artifact(server, "csrf-target", "x")
    browser.sign_in("lab")
    session = browser.session()
    r = session.post(f"{server.url}/ui/requests/{seeded['request']}/approve", data={}, timeout=10)
    assert r.status_code == 400 and "did not come from this dashboard" in r.text
    state = requests.get(
        f"{server.url}/v1/access-requests/{seeded['request']}",
        headers=server.auth("lab"),
        timeout=10,
    ).json()["state"]
    assert state == "pending"


def test_another_labs_artifact_is_not_found(browser: Browser, server: Server) -> None:
    seeded = seed_artifact(server, "lab-a-only", "x")
    browser.sign_in("other_lab")
    browser.go(f"/ui/artifacts/{seeded['artifact']}")
    assert browser.h1() == "Not found"
    r = browser.session().get(f"{server.url}/ui/artifacts/{seeded['artifact']}", timeout=10)
    assert r.status_code == 404
    api = requests.get(
        f"{server.url}/v1/artifacts/{seeded['artifact']}",
        headers=server.auth("other_lab"),
        timeout=10,
    )
    assert api.status_code == 404


def test_markup_in_a_name_and_a_justification_is_shown_inert(
    browser: Browser, server: Server
) -> None:
    seeded = seed_artifact(server, NASTY_NAME, NASTY_TEXT)
    browser.sign_in("lab")
    browser.go(f"/ui/requests/{seeded['request']}")
    assert NASTY_TEXT in browser.text() and NASTY_NAME in browser.h1()
    assert browser.no_alert()
    assert browser.driver.find_elements(By.CSS_SELECTOR, "main script, main img, main b") == []
    browser.go("/ui/artifacts")
    assert NASTY_NAME in browser.text() and browser.no_alert()
    browser.shot("inert-markup")


def test_every_page_carries_the_csp(browser: Browser, server: Server) -> None:
    browser.sign_in("auditor")
    session = browser.session()
    for path in ("/ui/sign-in", "/ui/audit", "/ui/audit/checkpoints", "/ui/nowhere-but-ui"):
        r = session.get(server.url + path, timeout=10, allow_redirects=False)
        if r.status_code != 404:
            assert r.headers["Content-Security-Policy"] == CSP, path
            assert r.headers["X-Frame-Options"] == "DENY"


def test_a_signed_out_session_cannot_be_used(browser: Browser, server: Server) -> None:
    browser.sign_in("lab")
    copy = browser.session()
    assert (
        copy.get(server.url + "/ui/artifacts", timeout=10, allow_redirects=False).status_code == 200
    )
    browser.button("Sign out")
    browser.wait(lambda: browser.h1() == "Sign in")
    browser.driver.back()
    browser.driver.refresh()
    assert browser.h1() == "Sign in"
    gone = copy.get(server.url + "/ui/artifacts", timeout=10, allow_redirects=False)
    assert gone.status_code == 302 and "/ui/sign-in" in gone.headers["Location"]


def _tab_to(browser: Browser, element_id: str, limit: int = 60) -> None:
    body = browser.driver.find_element(By.TAG_NAME, "body")
    body.click()
    for _ in range(limit):
        active = browser.driver.switch_to.active_element
        if active.get_attribute("id") == element_id:
            outline = active.value_of_css_property("outline-style")
            assert outline not in ("none", ""), "the focused field shows no focus ring"
            return
        active.send_keys(Keys.TAB)
    raise AssertionError(f"Tab never reached #{element_id}")


def test_the_main_forms_work_from_the_keyboard_and_every_input_has_a_label(
    browser: Browser, server: Server
) -> None:
    seeded = seed_artifact(server, "keyboard-model", "keyboard")
    browser.driver.delete_all_cookies()
    browser.go("/ui/sign-in")
    _tab_to(browser, "token")
    browser.driver.switch_to.active_element.send_keys(server.tokens["lab"], Keys.ENTER)
    browser.wait(lambda: "/ui/sign-in" not in browser.driver.current_url)
    browser.go(f"/ui/requests/{seeded['request']}")
    unlabelled = browser.driver.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
        ".filter(e => e.labels.length === 0).map(e => e.name)"
    )
    assert unlabelled == []
    _tab_to(browser, "duration_hours")
    browser.driver.switch_to.active_element.send_keys("12", Keys.ENTER)
    browser.wait(lambda: "approved" in browser.h1())
    browser.go("/ui/artifacts")  # the skip link is the first stop, before the navigation
    browser.driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    assert browser.driver.switch_to.active_element.text == "Skip to content"
