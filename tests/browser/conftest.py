"""The browser tier: one local stack and one Playwright driver for the console's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.browser.driver import launch
from tests.integration.conftest import local_stack


@pytest.fixture(scope="session")
def console_stack() -> Iterator[str]:
    """``python -m local_stack`` (serving the console at /) on a free port: its base URL. On moto:
    the console's tests hold a few items, and DynamoDB Local's JVM costs ten seconds of CPU to
    start (the integration tier runs the stack on it)."""
    with local_stack(MAX_ACTIVE_SESSIONS="100", LOCAL_DYNAMODB="moto") as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, launched once (each test opens a context of its own per user)."""
    with sync_playwright() as driver:
        chromium = launch(driver)
        try:
            yield chromium
        finally:
            chromium.close()
