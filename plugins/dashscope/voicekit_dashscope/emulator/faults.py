"""Faults the emulator injects on demand, triggered by how much audio it has received.

A spec is a comma-separated list of rules, each ``KIND[=ARG]@SECONDS`` (once, when the
emulator has received that many seconds of audio in total, over all tasks) or
``KIND[=ARG]/SECONDS`` (every that many seconds of audio). Kinds:

``drop``        stop answering entirely — no pongs, no close, the TCP connection stays open
``reset``       drop the TCP connection without a WebSocket close
``close1011``   close the WebSocket with code 1011 (internal error); ``close=CODE`` for others
``idle``        ``task-failed`` CLIENT_ERROR "request timeout after 23 seconds.", then close
``task-failed`` ``task-failed`` (``task-failed=CODE`` picks the code; default InternalError), then close
``malformed``   send a frame that is not valid JSON, then carry on
``slow``        delay every following frame of that connection by ARG seconds (default 1)
``reject``      refuse the next WebSocket handshakes with HTTP ARG (default 503) — once per trigger

Example: ``drop@5,close1011/7,task-failed/11``.
"""

from __future__ import annotations

import re

import attrs

from voicekit.errors import ConfigError

KINDS = ("drop", "reset", "close1011", "close", "idle", "task-failed", "malformed", "slow", "reject")
_RULE = re.compile(r"^(?P<kind>[a-z0-9-]+)(?:=(?P<arg>[A-Za-z0-9_.\-]+))?(?P<op>[@/])(?P<t>\d+(?:\.\d+)?)s?$")


@attrs.frozen
class Fault:
    kind: str
    arg: str | None = None


@attrs.define
class FaultRule:
    fault: Fault
    at: float | None = None  # once, at this many seconds of audio
    every: float | None = None  # repeatedly, every this many seconds
    next_at: float = 0.0
    fired: int = 0

    def __attrs_post_init__(self) -> None:
        self.next_at = self.at if self.at is not None else (self.every or 0.0)


@attrs.define
class FaultPlan:
    rules: list[FaultRule] = attrs.field(factory=list)
    audio_seconds: float = 0.0
    injected: list[tuple[float, Fault]] = attrs.field(factory=list)
    pending_rejects: list[int] = attrs.field(factory=list)

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        plan = cls()
        if not spec:
            return plan
        for raw in spec.split(","):
            item = raw.strip()
            if not item:
                continue
            m = _RULE.match(item)
            if m is None or m["kind"] not in KINDS:
                raise ConfigError(
                    f"bad fault rule {item!r}: write KIND@SECONDS or KIND/SECONDS with KIND one of "
                    f"{', '.join(KINDS)} (e.g. 'drop@5,close1011/7')")
            t = float(m["t"])
            if t <= 0:
                raise ConfigError(f"fault rule {item!r}: the time must be more than 0 seconds")
            fault = Fault(m["kind"], m["arg"])
            if fault.kind == "slow" and fault.arg is not None:
                try:
                    float(fault.arg)
                except ValueError:
                    raise ConfigError(f"fault rule {item!r}: slow=SECONDS needs a number") from None
            if fault.kind in ("close", "reject") and fault.arg is not None and not fault.arg.isdigit():
                raise ConfigError(f"fault rule {item!r}: {fault.kind}=CODE needs a number")
            plan.rules.append(FaultRule(fault, at=t if m["op"] == "@" else None,
                                        every=t if m["op"] == "/" else None))
        return plan

    def advance(self, seconds: float) -> list[Fault]:
        """Count ``seconds`` more audio; return the faults that are now due (in order)."""
        self.audio_seconds += seconds
        due: list[Fault] = []
        for rule in self.rules:
            while rule.next_at and self.audio_seconds >= rule.next_at:
                rule.fired += 1
                due.append(rule.fault)
                if rule.every is None:
                    rule.next_at = 0.0
                else:
                    rule.next_at += rule.every
        for f in due:
            self.injected.append((self.audio_seconds, f))
            if f.kind == "reject":
                self.pending_rejects.append(int(f.arg or 503))
        return [f for f in due if f.kind != "reject"]

    def take_reject(self) -> int | None:
        return self.pending_rejects.pop(0) if self.pending_rejects else None
