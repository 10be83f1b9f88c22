"""Helpers of the DashScope plugin tests (no tests here).

``plugins/dashscope/tests/conftest.py`` puts ``plugins/dashscope/tests`` on ``sys.path`` (pytest's
default ``prepend`` import mode), so every test folder imports ``from testkit.<module> import ...``:

* ``common``: tone scripts, the tone emulator, streaming helpers, the fault-free word comparison;
* ``files``: WAV bytes, a loopback file server, a two-speaker recording;
* ``realtime``: paced sources, a timing sink, realtime conversations on the in-memory transport;
* ``journey``: the long-lived ``voicekit emulate dashscope`` process the realtime journeys share;
* ``sdk_driver.py``, ``files_sdk_driver.py``: scripts that drive the official ``dashscope`` SDK in a
  subprocess (it reads its base URLs at import time); run them by path, :data:`SDK_DRIVER` and
  :data:`FILES_SDK_DRIVER`, never import them.

Tests import helpers from here, never from another test module.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SDK_DRIVER = HERE / "sdk_driver.py"
FILES_SDK_DRIVER = HERE / "files_sdk_driver.py"
