"""Assistants: intents declared with decorators, answered by async handlers.

::

    robot = Assistant("robot", description="moves when told to")

    @robot.intent("go {direction:forward|backward} {distance:number} [meter|meters]")
    async def move(turn: Turn) -> str:
        return f"Moving {turn.slots['direction']} {turn.slots['distance']} meters."

    @robot.fallback
    async def unknown(turn: Turn) -> str:
        return "Sorry, I can only move forward or backward."

A handler gets a :class:`Turn` and returns a reply: a string, a :class:`Reply`, ``None`` (stay
silent), or an async iterator of strings (a streamed reply, spoken sentence by sentence). Handlers
are usually ``async def``; a plain ``def`` handler is run in a worker thread, so it may block.
Each piece of a reply must come within the assistant's ``handler_timeout``; a handler that fails,
overruns or returns anything else is reported as an ``Error`` event and answered with the
assistant's ``apology`` (see ``voicekit.session.handling``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from voicekit.errors import ConfigError
from voicekit.handlers.numbers import NUMBER_WORDS
from voicekit.handlers.protocol import Handler
from voicekit.handlers.templates import Template, compile_template, normalize


@attrs.frozen
class Reply:
    text: str
    end_session: bool = False


@attrs.define
class Turn:
    """What a handler receives. ``context`` is the session's dict, kept across turns."""

    text: str
    intent: str
    slots: dict[str, Any]
    turn_id: int
    context: dict[str, Any]
    language: str | None = None
    emotion: str | None = None
    speaker: str | None = None
    scheduler: Callable[[str, float], Announcement] | None = attrs.field(default=None, repr=False)

    def announce(self, text: str, *, after: float) -> Announcement:
        """Have the assistant say ``text`` by itself ``after`` seconds from now (a timer, a
        reminder). Returns a handle whose ``cancel()`` calls it off. Announcements still pending
        when the session ends are dropped.

        "Now" is the session's clock when the input is paced (a microphone, ``--realtime``), and
        the input's own audio time when it is not (a file read as fast as it decodes): ``after=3``
        then fires once 3 more seconds of the file have been heard."""
        if self.scheduler is None:
            raise ConfigError("this turn does not belong to a running session: nothing can be announced")
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"an announcement needs some text to say, not {text!r:.40}")
        if isinstance(after, bool) or not isinstance(after, int | float) or not math.isfinite(after):
            raise ConfigError(f"announce(after=...) takes a finite number of seconds, not {after!r}")
        if after < 0:
            raise ConfigError("an announcement cannot be scheduled in the past")
        return self.scheduler(text, float(after))


@attrs.define
class Announcement:
    """A scheduled announcement; ``cancel()`` calls it off if it has not started yet."""

    text: str
    due: float  # seconds on the session clock, or audio seconds of the input when it is not paced
    scope: Any = attrs.field(repr=False)  # trio.CancelScope

    def cancel(self) -> None:
        self.scope.cancel()



@attrs.frozen
class Intent:
    name: str
    handler: Handler
    templates: tuple[Template, ...] = ()
    regexes: tuple[re.Pattern[str], ...] = ()
    phrases: tuple[str, ...] = ()

    def match(self, normalized: str) -> dict[str, Any] | None:
        """Slots when ``normalized`` (:func:`normalize` with ``keep_case=True``) matches; case is
        ignored, free slots and regex groups keep the recognized casing."""
        if normalize(normalized) in self.phrases:
            return {}
        for t in self.templates:
            slots = t.match(normalized)
            if slots is not None:
                return slots
        for rx in self.regexes:
            m = rx.fullmatch(normalized) or rx.search(normalized)
            if m is not None:
                return {k: v for k, v in m.groupdict().items() if v is not None}
        return None


@attrs.frozen
class Match:
    intent: str
    handler: Handler
    slots: dict[str, Any]


class Assistant:
    """A set of intents plus a fallback, with the settings a session needs to run them."""

    def __init__(self, name: str, *, description: str = "", language: str = "en",
                 handler_timeout: float = 10.0, apology: str = "Sorry, something went wrong.",
                 greeting: str | None = None, max_reply_chars: int = 10_000) -> None:
        if not handler_timeout > 0 or not math.isfinite(handler_timeout):
            raise ConfigError("handler_timeout must be a positive number of seconds")
        if max_reply_chars < 1:
            raise ConfigError("max_reply_chars must be at least 1")
        self.name = name
        self.description = description
        self.language = language
        self.handler_timeout = handler_timeout
        self.apology = apology
        self.greeting = greeting
        self.max_reply_chars = max_reply_chars  # a longer reply is cut (with a Warning event)
        self.intents: list[Intent] = []
        self._fallback: Handler | None = None

    def intent(self, *templates: str, name: str | None = None, regex: str | Iterable[str] = (),
               phrases: Iterable[str] = ()) -> Callable[[Handler], Handler]:
        """Declare an intent: templates (see :mod:`voicekit.handlers.templates`), regexes
        (named groups become slots) and/or exact phrases. First declared, first matched."""
        regs = [regex] if isinstance(regex, str) else list(regex)
        compiled_t = tuple(compile_template(t) for t in templates)
        try:
            compiled_r = tuple(re.compile(r, re.IGNORECASE) for r in regs)
        except re.error as exc:
            raise ConfigError(f"bad intent regex: {exc}") from exc
        norm_phrases = tuple(normalize(p) for p in phrases)
        if not (compiled_t or compiled_r or norm_phrases):
            raise ConfigError("an intent needs at least one template, regex or phrase")

        def register(fn: Handler) -> Handler:
            intent_name = name or str(getattr(fn, "__name__", "intent"))
            if any(i.name == intent_name for i in self.intents):
                raise ConfigError(f"assistant {self.name!r} already has an intent named {intent_name!r}")
            self.intents.append(Intent(intent_name, fn, compiled_t, compiled_r, norm_phrases))
            return fn

        return register

    def fallback(self, fn: Handler) -> Handler:
        """The handler for a turn no intent matches."""
        self._fallback = fn
        return fn

    def match(self, text: str) -> Match | None:
        norm = normalize(text, keep_case=True)
        if not norm:
            return None
        for intent in self.intents:
            slots = intent.match(norm)
            if slots is not None:
                return Match(intent.name, intent.handler, slots)
        if self._fallback is not None:
            return Match("fallback", self._fallback, {})
        return None

    # -- hints for the recognizer -------------------------------------------------------------

    def phrases(self) -> list[str]:
        """Literal words and phrases of every intent: hotwords for engines that take them."""
        out: list[str] = []
        for intent in self.intents:
            out.extend(intent.phrases)
            for t in intent.templates:
                literal = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\([^)]*\)", "|", t.source)
                out.extend(normalize(p) for p in literal.split("|") if normalize(p))
                for body in re.findall(r"\{\w+:([^}]*)\}|\[([^\]]*)\]|\(([^)]*)\)", t.source):
                    for group in body:
                        if group and group != "number":
                            out.extend(normalize(p) for p in group.split("|") if normalize(p))
        seen: dict[str, None] = {}
        for p in out:
            seen.setdefault(p, None)
        return list(seen)

    def jsgf(self) -> str | None:
        """A JSGF grammar equivalent to the templates, for command-mode recognizers.

        None when an intent uses a free ``{slot}`` or a regex (neither is a closed grammar).
        """
        rules: list[str] = []
        for intent in self.intents:
            if intent.regexes:
                return None
            for p in intent.phrases:
                rules.append(p)
            for t in intent.templates:
                if "text" in t.slots.values():
                    return None
                body = t.source
                body = re.sub(r"\{\w+:number\}", "<number>", body)
                body = re.sub(r"\{\w+:([^}]*)\}", lambda m: "(" + m.group(1) + ")", body)
                rules.append(normalize_jsgf(body))
        if not rules:
            return None
        numbers = " | ".join(sorted(NUMBER_WORDS - {"and", "point", "half", "a", "an", "oh"}))
        lines = ["#JSGF V1.0;", f"grammar {re.sub(r'[^A-Za-z0-9_]', '_', self.name)};",
                 "public <command> = " + " | ".join(f"( {r} )" for r in rules) + ";",
                 f"<number> = ( {numbers} )+;"]
        return "\n".join(lines) + "\n"


def normalize_jsgf(body: str) -> str:
    body = body.lower()
    return " ".join(re.sub(r"[^a-z0-9<>|()\[\]' ]", " ", body).split())
