"""The README's picture of the console: ``python -m tests.browser.screenshot [docs/console.png]``.

Starts its own local stack, signs in, makes a little history through the console itself (two
sessions, two chats, a few exchanges) and saves a screenshot. Rerun it when the console changes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from tests.browser.driver import (
    browser_context,
    chat_button,
    create_chat,
    create_session,
    launch,
    open_console,
    send,
    sign_in,
)
from tests.integration.conftest import local_stack
from tests.servers import ROOT


def main(argv: list[str]) -> None:
    target = Path(argv[0]) if argv else ROOT / "docs" / "console.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    with local_stack() as url, sync_playwright() as playwright:
        browser = launch(playwright)
        with browser_context(browser, (1400, 860)) as context:
            page = open_console(context, url)
            sign_in(page, "alice")
            create_session(page, "Reading list")
            create_chat(page, "Novels")
            create_session(page, "Trip planning")
            create_chat(page, "Hotels")
            create_chat(page, "Flights")
            send(page, "Which airport is closest to the old town?")
            send(page, "And the cheapest way from there?")
            chat_button(page, "Flights").focus()
            expect(page.locator("#messages li")).to_have_count(4)
            page.screenshot(path=str(target))
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
