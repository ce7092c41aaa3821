"""Fixtures of the browser tests: the real services started the way ``make run`` does,
Debian's Chromium driven by Playwright, and a folder for screenshots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, expect, sync_playwright

from bench.stack import RELAXED_LIMITS
from chat_shared.devstack import Stack
from tests.browser.windows import CHROMIUM, CHROMIUM_ARGS, WIDE, ChatWindow, Rest
from tests.support.ports import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Cheap password hashing and room for many sign-ups from one address: these tests are
# about the client, the auth suite covers brute-force protection. Access tokens live
# the shortest time auth allows (60 s) so a test can watch one being refreshed.
STACK_ENV = {
    # The tests seed long histories over REST faster than a person could type.
    **RELAXED_LIMITS,
    "CHAT_ARGON2_TIME_COST": "2",
    "CHAT_ARGON2_MEMORY_KIB": "19456",
    "CHAT_SIGNUPS_PER_ADDRESS": "10000",
    "CHAT_ACCESS_TOKEN_TTL_SECONDS": "60",
    "CHAT_LOG_LEVEL": "WARNING",
}


@dataclass
class WebStack:
    stack: Stack

    @property
    def web_url(self) -> str:
        return f"{self.stack.services['gateway'].url}/"

    @property
    def rest(self) -> Rest:
        return Rest(self.stack.services["auth"].url, self.stack.services["history"].url)


# Module scope, not session: sync Playwright keeps an event loop running in this thread
# while it is open, which would break every asyncio test collected after these.
@pytest.fixture(scope="module")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebStack]:
    stack = Stack(
        data_dir=tmp_path_factory.mktemp("web-stack"),
        ports={"gateway": free_port(), "auth": free_port(), "history": free_port()},
        extra_env=STACK_ENV,
    )
    try:
        stack.start()
        yield WebStack(stack)
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.fail("CI must run the browser tests: chromium is not on PATH", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


OpenWindow = Callable[..., ChatWindow]


@pytest.fixture
def open_window(browser: Browser, web_stack: WebStack) -> Iterator[OpenWindow]:
    """``open_window(viewport=...)``: a fresh browser context (its own storage, like a
    separate device) on the web client. Contexts still open at the end are closed."""
    expect.set_options(timeout=10_000)
    contexts: list[BrowserContext] = []

    def open_one(viewport: ViewportSize = WIDE) -> ChatWindow:
        context = browser.new_context(viewport=viewport, locale="en-US", timezone_id="UTC")
        contexts.append(context)
        return ChatWindow(context.new_page(), web_stack.web_url).open()

    yield open_one
    for context in contexts:
        context.close()
