"""The library is quiet by default and never takes structlog's configuration from the application."""

from __future__ import annotations

import subprocess
import sys


def program(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_unconfigured_library_prints_only_warnings_to_stderr() -> None:
    r = program(
        "import voicekit_dashscope.upload as up\n"  # a module that logs an info line per upload
        "from voicekit.logging import get_logger\n"
        "up.log.info('file_uploaded', file='a.wav')\n"
        "log = get_logger('voicekit.test')\n"
        "log.debug('debug line'); log.info('info line'); log.warning('careful', secret_free=True)\n"
        "print('app output')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "app output\n"
    assert "careful" in r.stderr and "info line" not in r.stderr and "file_uploaded" not in r.stderr


def test_an_applications_configuration_is_used_not_overwritten() -> None:
    r = program(
        "import structlog\n"
        "seen = []\n"
        "def keep(_, level, event):\n"
        "    seen.append((level, event['event'])); raise structlog.DropEvent\n"
        "from voicekit.logging import get_logger\n"
        "log = get_logger('voicekit.test')\n"
        "log.info('before')\n"  # not configured yet: quiet
        "structlog.configure(processors=[keep])\n"
        "log.info('after')\n"
        "print(seen)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[('info', 'after')]\n"
    # an application that never configures structlog keeps structlog's own defaults for its lines
    r = program(
        "import structlog\n"
        "from voicekit.logging import get_logger\n"
        "get_logger('voicekit.test').warning('from voicekit')\n"
        "structlog.get_logger().info('from the app')\n")
    assert r.returncode == 0, r.stderr
    assert "from the app" in r.stdout and "from voicekit" in r.stderr and "from voicekit" not in r.stdout
