"""A real headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium.

The flags keep Chromium from reaching for the network, which this machine does not have
(without them it stalls); each browser gets a fresh profile directory. Screenshots go to
``tests/web/output/`` (git-ignored).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from nacl.signing import SigningKey
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests import helpers
from tests.e2e.conftest import Server
from tests.tools import require_tool

OUTPUT = Path(__file__).parent / "output"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def chromium(profile: Path, downloads: Path) -> WebDriver:
    """A headless Chromium with a fresh profile, its downloads going to ``downloads``."""
    binary = require_tool("chromium")
    driver = require_tool("chromedriver", "chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


class Browser:
    """One browser against one server: sign in as a role, look, act, take pictures."""

    def __init__(self, driver: WebDriver, server: Server, downloads: Path) -> None:
        self.driver, self.server, self.downloads = driver, server, downloads

    def go(self, path: str) -> None:
        self.driver.get(self.server.url + path)

    def sign_in(self, who: str) -> None:
        self.driver.delete_all_cookies()
        self.go("/ui/sign-in")
        self.driver.find_element(By.ID, "token").send_keys(self.server.tokens[who])
        self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait(lambda: "/ui/sign-in" not in self.driver.current_url)

    def text(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "main").text)

    def h1(self) -> str:
        return str(self.driver.find_element(By.TAG_NAME, "h1").text)

    def click_link(self, text: str, *, download: bool = False) -> None:
        """Follow the link whose whole text is ``text`` (in the page's main part first).

        A link to a ``download`` leaves the page where it is: nothing is waited for.
        """
        for scope in ("main", "body"):
            found = self.driver.find_element(By.TAG_NAME, scope).find_elements(By.LINK_TEXT, text)
            if found:
                if download:
                    found[0].click()
                else:
                    self._navigating(found[0].click)
                return
        raise AssertionError(f"no link {text!r} on {self.driver.current_url}")

    def button(self, text: str) -> None:
        """Press the button labelled ``text``, and wait for the page it leads to."""
        for b in self.driver.find_elements(By.TAG_NAME, "button"):
            if b.text.strip() == text:
                self._navigating(b.click)
                return
        raise AssertionError(f"no button {text!r} on {self.driver.current_url}")

    def _navigating(self, act: Callable[[], None]) -> None:
        """Do ``act``, then wait until the page it replaces is gone."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        act()

        def replaced() -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            return False

        self.wait(replaced)

    def wait(self, done: Callable[[], bool], timeout: float = 30) -> None:
        """Until ``done()``; a page replaced while it is read counts as not done yet."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if done():
                    return
            except (StaleElementReferenceException, NoSuchElementException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out on {self.driver.current_url}")
            time.sleep(0.1)

    def shot(self, name: str) -> None:
        OUTPUT.mkdir(exist_ok=True)
        self.driver.save_screenshot(str(OUTPUT / f"{name}.png"))

    def session(self) -> requests.Session:
        """An HTTP client holding this browser's cookies (to read statuses and headers)."""
        s = requests.Session()
        for c in self.driver.get_cookies():
            s.cookies.set(c["name"], c["value"], path=c.get("path", "/"))
        return s

    def no_alert(self) -> bool:
        try:
            _ = self.driver.switch_to.alert
        except NoAlertPresentException:
            return True
        return False

    def console_errors(self) -> list[str]:
        logs: list[dict[str, Any]] = self.driver.get_log("browser")
        return [e["message"] for e in logs if e["level"] in ("SEVERE", "WARNING")]


def seed_artifact(server: Server, name: str, justification: str) -> dict[str, str]:
    """A lab's artifact shared with agency-a, and a pending request by eve: via the API."""
    lab = requests.Session()
    lab.headers.update(server.auth("lab"))
    key = SigningKey.generate()
    lab.put(server.url + "/v1/me/signing-key", json={"public_key": helpers.public_b64(key)})
    up = lab.post(
        server.url + "/v1/uploads",
        json={"name": name, "kind": "weights", "share_with": ["agency-a"]},
        timeout=10,
    ).json()
    plaintext = helpers.random_bytes(300_000, seed=3)
    data = helpers.age_file(up["recipient"], plaintext)
    for n, part in enumerate(helpers.split(data, up["part_size"]), start=1):
        r = lab.put(
            f"{server.url}/v1/uploads/{up['id']}/parts/{n}",
            data=part,
            headers={"X-Content-SHA256": helpers.sha(part)},
            timeout=30,
        )
        assert r.status_code == 200, r.text
    m = helpers.manifest(up, data, plaintext)
    done = lab.post(
        f"{server.url}/v1/uploads/{up['id']}/complete",
        json={"manifest": m, "signature": helpers.sign(m, key)},
        timeout=30,
    )
    assert done.status_code == 201, done.text
    artifact = done.json()["id"]
    asked = requests.post(
        f"{server.url}/v1/artifacts/{artifact}/access-requests",
        json={"justification": justification, "duration_hours": 48},
        headers=server.auth("eval"),
        timeout=10,
    )
    assert asked.status_code == 201, asked.text
    return {"artifact": artifact, "request": asked.json()["id"]}


def clean_output() -> None:
    shutil.rmtree(OUTPUT, ignore_errors=True)
