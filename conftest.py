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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs two pytest-xdist workers with ``--dist loadgroup``: keep each test file on
    one worker (module fixtures such as the journeys' long-lived emulator start once) and the
    sound-device tests on one worker (each starts its own sound server). The executable docs are
    run apart, in one process (``make test``'s second command): under xdist Sybil's ``skip``
    directive and a page's shared namespace are not kept, so they are grouped here only for safety."""
    root = config.rootpath
    for item in items:
        path = item.path
        if path.suffix == ".md":
            group = "docs"
        elif path.name.startswith("test_device_"):
            group = "devices"
        else:
            try:
                group = str(path.relative_to(root))
            except ValueError:
                group = str(path)
        item.add_marker(pytest.mark.xdist_group(group))
