"""Debian's Chromium driven by Playwright, and the console's steps the browser tests share.

Why not Playwright's own browsers: they are downloaded at run time from a CDN, which CI and this
project's machines do not reach. Debian's ``chromium`` package (``apt-get install chromium``,
which ``.ci/run`` does when it is missing) is launched by its path, with every background
download and sync switched off, once per test run with an empty profile; each user gets a
browser context of their own (no cookies, no storage shared), so nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, BrowserContext, Locator, Page, Playwright, expect

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Expectations wait (polling) for the page to get there and return as soon as it does: the bound
# only ends a hung test. A busy machine can take many seconds to start a cold handler process.
WAIT_MS = 120_000


def chromium_path() -> str:
    """The Debian Chromium, or a clear failure saying how to install it (never a silent skip)."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if os.access(CHROMIUM, os.X_OK) else None)
    if path is None:
        raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set CHROMIUM to its path)")
    return path


def launch(playwright: Playwright) -> Browser:
    """The Chromium, headless, with a new empty profile (Playwright gives a browser it launches a
    fresh temporary ``--user-data-dir``, removed when it closes)."""
    browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
    return browser


@contextmanager
def browser_context(browser: Browser, viewport: tuple[int, int] = (1280, 800)) -> Iterator[BrowserContext]:
    """A browser context of its own for one user: no cookies, no storage, nothing shared with
    other contexts (a browser window in a private profile)."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    context.set_default_timeout(WAIT_MS)
    # An uncaught exception or unhandled rejection in the console's code fails the test, even if
    # the page looked right.
    thrown: list[str] = []
    context.on("weberror", lambda error: thrown.append(str(error.error)))
    try:
        yield context
    finally:
        context.close()
    assert not thrown, f"the console's code threw: {thrown}"


def open_console(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    page.goto(url + "/")
    return page


def sign_in(page: Page, user: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#user-name")).to_have_text(user)


def create_session(page: Page, name: str) -> None:
    page.get_by_label("New session name").fill(name)
    page.get_by_role("button", name="Create session").click()
    expect(page.locator("#session-title")).to_have_text(name)


def create_chat(page: Page, name: str) -> None:
    page.get_by_label("New chat name").fill(name)
    page.get_by_role("button", name="Create chat").click()
    expect(active_chat(page)).to_contain_text(name)
    expect(page.locator("#chat-title")).to_have_text(name)


def chat_button(page: Page, name: str) -> Locator:
    """The button that opens (switches to) the chat called ``name``."""
    named = page.locator(".name", has_text=re.compile(f"^{re.escape(name)}"))
    return page.locator("#chat-list button.open").filter(has=named)


def session_button(page: Page, name: str) -> Locator:
    named = page.locator(".name", has_text=re.compile(f"^{re.escape(name)}"))
    return page.locator("#session-list button.open").filter(has=named)


def active_chat(page: Page) -> Locator:
    """The chat marked active (``aria-current``) in the session's chat list."""
    return page.locator('#chat-list button.open[aria-current="true"]')


def send(page: Page, text: str) -> None:
    """Type and press Enter, then wait for the reply to the text to be shown."""
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")
    expect(page.locator("#messages li.assistant").last).to_contain_text(f"You said: {text!r}")
    # Answered, as the API now stores it: no "unanswered" left on the question (it stayed, from
    # the 202 that started the reply, until the page was reloaded).
    expect(page.locator("#messages li.user").last.locator(".warn")).to_have_count(0)


expect.set_options(timeout=WAIT_MS)
