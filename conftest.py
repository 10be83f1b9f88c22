"""Shared pytest set-up: quiet structlog (tests read events, not log lines)."""

import logging
from collections.abc import Iterator

import pytest
import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    """A test that configures logging (the CLI does) must not leak it into the next test."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
