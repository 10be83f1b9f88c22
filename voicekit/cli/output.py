"""How the CLI shows a session: readable lines, or JSON lines."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from voicekit import events as ev


def _default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


class Printer:
    def __init__(self, *, as_json: bool = False, partials: bool = True, stream: TextIO | None = None,
                 assistant: str = "assistant") -> None:
        self.as_json = as_json
        self.partials = partials
        self.out = stream or sys.stdout
        self.assistant = assistant
        self._partial_shown = False

    def __call__(self, event: ev.Event) -> None:
        if self.as_json:
            self.out.write(json.dumps(event.to_dict(), default=_default, ensure_ascii=False) + "\n")
            self.out.flush()
            return
        line = self._line(event)
        if line is None:
            return
        tty = self.out.isatty()
        if isinstance(event, ev.Transcript) and not event.is_final:
            if tty:
                self.out.write("\r\033[K" + line)
                self._partial_shown = True
            elif self.partials:
                self.out.write(line + "\n")
        else:
            if self._partial_shown:
                self.out.write("\r\033[K")
                self._partial_shown = False
            self.out.write(line + "\n")
        self.out.flush()

    def _line(self, e: ev.Event) -> str | None:
        if isinstance(e, ev.Transcript):
            if e.is_final:
                return f"you: {e.text}" if e.text.strip() else None
            return f"… {e.text}" if self.partials else None
        if isinstance(e, ev.IntentMatched):
            slots = ", ".join(f"{k}={v!r}" for k, v in e.slots.items())
            return f"   intent: {e.intent}" + (f" ({slots})" if slots else "")
        if isinstance(e, ev.ReplyText):
            return f"{self.assistant}: {e.text}"
        if isinstance(e, ev.ReplyInterrupted):
            return f"   (interrupted; heard: {e.heard_text!r})"
        if isinstance(e, ev.Error):
            return f"   error in {e.where}: {e.message}"
        if isinstance(e, ev.Warning):
            return f"   warning in {e.where}: {e.message} (x{e.count})"
        return None
