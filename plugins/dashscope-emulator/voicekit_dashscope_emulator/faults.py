"""Faults the emulator injects on demand, triggered by how much audio it has received.

A spec is a comma-separated list of rules, each ``KIND[=ARG]@SECONDS`` (once, when the
emulator has received that many seconds of *first-seen* audio in total, over all connections) or
``KIND[=ARG]/SECONDS`` (every that many seconds of first-seen audio).

The fault clock counts first-seen audio only (the task and the realtime endpoint both give it the
bytes and the connection). A client that resumes after a fault re-sends the
audio no final covered yet; those bytes are the same an earlier connection already received, so
they do not move the clock. A new connection's opening audio is compared with what the last few
connections received (:data:`REPLAY_WINDOW_S` each); as long as it repeats one of them it is
replay, and the first byte that differs (or runs past what was received) is new. So a schedule
names points of the *recording*: ``drop@5,close1011@10`` hits a resuming client once after 5 s
and once after 10 s of its audio, however much it re-sends, and every sentence is eventually
heard whole. Audio given without its bytes (``advance(seconds)``) always counts.

Kinds:

``drop``        stop answering entirely — no pongs, no close, the TCP connection stays open
``reset``       drop the TCP connection without a WebSocket close
``close1011``   close the WebSocket with code 1011 (internal error); ``close=CODE`` for others
``idle``        ``task-failed`` CLIENT_ERROR "request timeout after 23 seconds.", then close
``task-failed`` ``task-failed`` (``task-failed=CODE`` picks the code; default InternalError), then close
``malformed``   send a frame that is not valid JSON, then carry on
``slow``        delay every following frame of that connection by ARG seconds (default 1)
``stall``       stop reading for ARG seconds (default 5) — no pongs, no new audio heard — while
                results already under way are still sent; then carry on (a server that falls
                behind: a client whose ping times out meanwhile reconnects)
``reject``      refuse the next WebSocket handshakes with HTTP ARG (default 503) — once per trigger

Example: ``drop@5,close1011/7,task-failed/11``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import attrs
import numpy as np

from voicekit.errors import ConfigError

KINDS = ("drop", "reset", "close1011", "close", "idle", "task-failed", "malformed", "slow", "stall",
         "reject")
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


def _parse_rule(item: str) -> FaultRule:
    """One ``KIND[=ARG]@SECONDS`` or ``KIND[=ARG]/SECONDS`` rule, checked."""
    m = _RULE.match(item)
    if m is None or m["kind"] not in KINDS:
        raise ConfigError(
            f"bad fault rule {item!r}: write KIND@SECONDS or KIND/SECONDS with KIND one of "
            f"{', '.join(KINDS)} (e.g. 'drop@5,close1011/7')")
    t = float(m["t"])
    if t <= 0:
        raise ConfigError(f"fault rule {item!r}: the time must be more than 0 seconds")
    fault = Fault(m["kind"], m["arg"])
    _check_arg(item, fault)
    once = m["op"] == "@"
    return FaultRule(fault, at=t if once else None, every=None if once else t)


def _check_arg(item: str, fault: Fault) -> None:
    if fault.arg is None:
        return
    if fault.kind in ("slow", "stall"):
        try:
            float(fault.arg)
        except ValueError:
            raise ConfigError(f"fault rule {item!r}: {fault.kind}=SECONDS needs a number") from None
    if fault.kind in ("close", "reject") and not fault.arg.isdigit():
        raise ConfigError(f"fault rule {item!r}: {fault.kind}=CODE needs a number")


REPLAY_WINDOW_S = 60.0  # how much of each connection's latest audio a resuming client may re-send
REPLAY_SOURCES = 6  # how many recent connections are remembered for that
_DECIDE_S = 0.2  # audio a new connection must have sent before it is judged replay or new


@attrs.define(eq=False)
class _Source:
    """What one connection has sent, and whether it is still repeating an earlier connection."""

    bytes_per_s: float
    history: bytearray = attrs.field(factory=bytearray)  # its latest audio
    base: int = 0  # absolute byte index of history[0]
    opening: bytearray = attrs.field(factory=bytearray)  # its audio so far, while judged replay
    state: str = "probe"  # probe → replay → fresh
    ref: _Source | None = None  # the earlier connection it repeats
    pos: int = 0  # absolute byte index in ref's history of the next byte expected

    def remember(self, audio: bytes) -> None:
        self.history += audio
        limit = int(REPLAY_WINDOW_S * self.bytes_per_s)
        extra = len(self.history) - limit
        if extra > 0:
            del self.history[:extra]
            self.base += extra

    @property
    def end(self) -> int:
        """Absolute byte index just past what this connection has sent."""
        return self.base + len(self.history)

    def find(self, needle: bytes | bytearray) -> int | None:
        """Absolute position of ``needle`` in this history, or where the history ends in a prefix
        of ``needle`` (a replay that has just run past what this connection received): the longest
        such prefix. Linear in the lengths, periodic audio (silence, tones) included."""
        at = self.history.find(needle)
        if at >= 0:
            return self.base + at
        size = len(self.history)
        tail = memoryview(self.history)[max(0, size - len(needle) + 1):]
        for k in _overlaps(tail, needle)[:_MAX_VERIFY]:
            if tail[len(tail) - k:] == memoryview(needle)[:k]:
                return self.end - int(k)
        return None


_MOD = 2_147_483_647  # 2**31 - 1, a prime: the product of two residues fits in an int64
_BASE = 1_000_003
_MAX_VERIFY = 4  # hash matches checked byte by byte (more than one only on a hash collision)


def _powers(n: int) -> np.ndarray:
    """``_BASE ** i % _MOD`` for ``i`` in ``range(n)``, by doubling (a few vector steps)."""
    pw = np.ones(max(n, 1), dtype=np.int64)
    filled = 1
    while filled < n:
        m = min(filled, n - filled)
        pw[filled:filled + m] = pw[:m] * pow(_BASE, filled, _MOD) % _MOD
        filled += m
    return pw


def _overlaps(tail: memoryview, needle: bytes | bytearray) -> np.ndarray:
    """The lengths ``k``, longest first, for which the last ``k`` bytes of ``tail`` and the first
    ``k`` of ``needle`` have the same polynomial hash (so are, barring a collision, equal).

    One pass over each, whatever the audio: comparing at every place where the needle's opening
    bytes occur instead costs a comparison per period on periodic audio (every two bytes of
    digital silence), quadratic in the overlap."""
    n = len(tail)
    count = min(n, len(needle))
    if count == 0:
        return np.empty(0, dtype=np.int64)
    pw = _powers(n)
    x = np.frombuffer(tail, dtype=np.uint8).astype(np.int64)
    y = np.frombuffer(needle, dtype=np.uint8, count=count).astype(np.int64)
    # S[j] = sum(x[u] * B**u for u < j); the tail's last k bytes hash, times B**(n-k), to S[n] - S[n-k]
    prefix = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(x * pw % _MOD, out=prefix[1:])
    prefix %= _MOD
    # G[k] = sum(y[i] * B**i for i < k)
    g = np.cumsum(y * pw[:count] % _MOD) % _MOD
    k = np.arange(1, count + 1)
    same = g * pw[n - k] % _MOD == (prefix[n] - prefix[n - k]) % _MOD
    found: np.ndarray = k[same]
    return found[::-1]


@attrs.define
class FaultPlan:
    rules: list[FaultRule] = attrs.field(factory=list)
    audio_seconds: float = 0.0
    injected: list[tuple[float, Fault]] = attrs.field(factory=list)
    pending_rejects: list[int] = attrs.field(factory=list)
    replayed_seconds: float = 0.0  # re-sent audio that did not move the clock
    _sources: OrderedDict[Any, _Source] = attrs.field(factory=OrderedDict, repr=False)

    @classmethod
    def parse(cls, spec: str | None) -> FaultPlan:
        items = [raw.strip() for raw in (spec or "").split(",")]
        return cls(rules=[_parse_rule(item) for item in items if item])

    def advance(self, seconds: float, audio: bytes | None = None, source: Any = None) -> list[Fault]:
        """Count ``seconds`` more audio; return the faults that are now due (in order).

        With the ``audio`` bytes and the connection (``source``, any object that stands for it),
        audio the connection re-sends from an earlier connection does not count."""
        if audio and source is not None and seconds > 0:
            # whole bytes per second: len / duration is 31999.999... for some chunk sizes, and
            # connections are compared only at the same rate
            fresh = self._fresh_bytes(source, audio, float(round(len(audio) / seconds)))
            self.replayed_seconds += (len(audio) - fresh) * seconds / len(audio)
            seconds = fresh * seconds / len(audio)
            if seconds <= 0:
                return []
        return self._tick(seconds)

    def _fresh_bytes(self, key: Any, audio: bytes, bytes_per_s: float) -> int:
        src = self._sources.get(key)
        if src is None:
            src = self._sources[key] = _Source(bytes_per_s)
            while len(self._sources) > REPLAY_SOURCES:
                self._sources.popitem(last=False)
        src.remember(audio)
        if src.state == "fresh":
            return len(audio)
        src.opening += audio
        if src.state == "probe":
            if len(src.opening) < _DECIDE_S * bytes_per_s:
                return 0  # judged once there is enough to tell
            return self._judge(key, src, len(src.opening))
        # replaying: does this piece go on repeating the earlier connection?
        assert src.ref is not None
        ref = src.ref
        offset = src.pos - ref.base
        expected = ref.history[offset: offset + len(audio)] if offset >= 0 else b""
        if len(expected) == len(audio) and expected == audio:
            src.pos += len(audio)
            return 0
        return self._judge(key, src, len(audio))

    def _judge(self, key: Any, src: _Source, unjudged: int) -> int:
        """Place the connection's opening audio in an earlier connection's history; return how
        many of the last ``unjudged`` bytes are new."""
        opening = src.opening
        repeated, ref, at = self._best_match(key, src)
        if ref is not None and repeated == len(opening):
            src.state, src.ref, src.pos = "replay", ref, at + len(opening)
            return 0
        src.state, src.ref, src.opening = "fresh", None, bytearray()
        return min(unjudged, len(opening) - repeated)

    def _best_match(self, key: Any, src: _Source) -> tuple[int, _Source | None, int]:
        """(bytes repeated, connection, position) of the earlier connection that the opening audio
        repeats the most of: the latest that holds all of it, else the longest overlap (a chance
        overlap of a few bytes with one connection must not hide a whole replay of another)."""
        best: tuple[int, _Source | None, int] = (0, None, 0)
        for other_key, other in reversed(self._sources.items()):
            if other_key is key or other.bytes_per_s != src.bytes_per_s:
                continue
            at = other.find(src.opening)
            if at is None:
                continue
            repeated = min(len(src.opening), other.end - at)
            if repeated > best[0]:
                best = (repeated, other, at)
            if repeated == len(src.opening):
                break
        return best

    def _tick(self, seconds: float) -> list[Fault]:
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
