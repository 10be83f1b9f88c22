"""``python -m voicekit_dashscope_emulator emulate dashscope ...`` (the same as ``voicekit emulate dashscope``)."""

from voicekit_dashscope_emulator.cli import main

raise SystemExit(main())
