"""``voicekit serve --agent MODEL``: each browser conversation talks to its own realtime agent.

A ``voicekit.agents`` plugin (a realtime model such as Qwen3.5-Omni, see
docs/dashscope-realtime.md) hears the user, answers in speech and calls the assistant's intents
as tools: it replaces the ASR, the assistant matching and the TTS of a pipeline session. Seen from
the server, an :class:`AgentSession` is a session like any other (the same ``run``, ``events``,
``now`` and ``audio_position``), so the browser protocol, the page and every limit of the server
(token, pending pool, idle timeout, admission, backlog shedding, drain, metrics) work unchanged.

Two things are adapted for the page:

* Reply audio goes out at the agent's own rate (24 kHz from the Omni models), announced in the
  ``audio_format`` message, as a TTS's would be; the agent's reply player paces it in real time
  and stops it within one chunk on a barge-in.
* The agent streams its reply text in small deltas; the page shows each ``reply_text`` as a word
  group joined by spaces, so the deltas are sent a sentence at a time (the rest when the reply
  ends). A reply cut before its first sentence was complete shows what the user heard.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Protocol

import attrs
import trio

from voicekit import events as ev
from voicekit.audio.sinks import AudioSink
from voicekit.audio.sources import AudioSource
from voicekit.errors import first_error, leaves, one_line, only_cancelled
from voicekit.handlers.assistant import Assistant
from voicekit.serve.stream import WebSocketSource

__all__ = ["Agent", "AgentRecipe", "AgentSession", "SentenceJoiner", "agent_recipe"]

#: Events waiting for the browser; the agent's own channel drops the oldest beyond its buffer.
EVENT_BUFFER: Final = 256
_SENTENCE_END: Final = re.compile(r"[.!?。！？…](?:[\"')\]]*)(?=\s|$)")


class Agent(Protocol):
    """What ``voicekit serve`` needs of a ``voicekit.agents`` plugin's agent (one per conversation)."""

    @property
    def sample_rate(self) -> int: ...  # of the reply audio

    @property
    def events(self) -> trio.MemoryReceiveChannel[ev.Event]: ...  # closes when run() returns

    async def run(self, source: AudioSource, sink: AudioSink) -> None: ...

    def now(self) -> float: ...


@attrs.define(kw_only=True)
class AgentRecipe:
    """How to build one :class:`AgentSession` per connection: ``factory()`` makes a fresh agent
    (its own realtime connection and conversation) each time."""

    factory: Callable[[], Agent]
    model: str
    reply_rate: int
    assistant: Assistant | None = None
    turn_detection: str | None = None

    def build(self, source: WebSocketSource, sink: AudioSink | None) -> AgentSession:
        if sink is None:
            raise ValueError("an agent conversation needs a sink for the reply audio")
        return AgentSession(self.factory(), source, sink, model=self.model, assistant=self.assistant,
                            turn_detection=self.turn_detection)


class SentenceJoiner:
    """Reply text deltas in, whole sentences out (per reply turn)."""

    def __init__(self) -> None:
        self._text: dict[int | None, str] = {}  # turn -> text not yet sent
        self._sent: set[int | None] = set()  # turns of which something was sent

    def add(self, turn_id: int | None, delta: str) -> list[str]:
        """The sentences ``delta`` completes."""
        text = self._text.get(turn_id, "") + delta
        out: list[str] = []
        while (m := _SENTENCE_END.search(text)) is not None:
            sentence, text = text[:m.end()].strip(), text[m.end():]
            if sentence:
                out.append(sentence)
        self._text[turn_id] = text
        if out:
            self._sent.add(turn_id)
        return out

    def finish(self, turn_id: int | None, *, heard: str | None = None) -> str | None:
        """What is left to show when the reply ends: the unfinished last sentence; for an
        interrupted reply (``heard`` given) only what was heard, and only if nothing was shown."""
        rest = self._text.pop(turn_id, "").strip()
        shown = turn_id in self._sent
        self._sent.discard(turn_id)
        if heard is not None:
            return None if shown or not heard.strip() else heard.strip() + " …"
        return rest or None


class AgentSession:
    """One conversation with a realtime agent, shaped like a :class:`voicekit.session.Session`
    for the server: ``run()``, ``events()`` (starting with ``session_started``, ending with
    ``session_ended``), ``now()`` and ``audio_position``."""

    def __init__(self, agent: Agent, source: WebSocketSource, sink: AudioSink, *, model: str,
                 assistant: Assistant | None = None, turn_detection: str | None = None) -> None:
        self.agent = agent
        self.source = source
        self.sink = sink
        self.model = model
        self.assistant = assistant
        self.turn_detection = turn_detection
        self.id = uuid.uuid4().hex[:12]
        self._send, self._recv = trio.open_memory_channel[ev.Event](EVENT_BUFFER)
        self._joiner = SentenceJoiner()
        self._t0: float | None = None

    def now(self) -> float:
        return 0.0 if self._t0 is None else trio.current_time() - self._t0

    @property
    def audio_position(self) -> float:
        """Seconds of input the agent has taken from the source (it streams it to the model as it
        comes). Until it takes the first piece it is connecting to the service, which is not
        falling behind: the audio received meanwhile counts as taken (it waits, bounded, in the
        source and goes out at once when the connection is up)."""
        delivered = self.source.delivered
        return delivered if delivered > 0 else self.source.received

    async def events(self) -> AsyncIterator[ev.Event]:
        async with self._recv:
            async for event in self._recv:
                yield event

    async def run(self) -> None:
        """Run the agent until the input ends and its last reply has played."""
        self._t0 = trio.current_time()
        reason = "input ended"
        try:
            await self._send.send(ev.SessionStarted(
                t=0.0, session_id=self.id, asr=self.model, vad=self.turn_detection or "server", tts=self.model,
                assistant=self.assistant.name if self.assistant else None))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.agent.run, self.source, self.sink)
                async for event in self.agent.events:
                    for out in self._adapt(event):
                        await self._send.send(out)
        except BaseException as exc:
            reason = "cancelled" if only_cancelled(exc) else "error"
            if reason == "error":
                leaf = first_error(exc, BaseException) or leaves(exc)[0]  # not the nursery's group
                self._emit_now(ev.ErrorEvent(t=self.now(), where="agent", message=one_line(leaf),
                                             error_type=type(leaf).__name__))
            raise
        finally:
            self._emit_now(ev.SessionEnded(t=self.now(), reason=reason))
            self._send.close()

    def _emit_now(self, event: ev.Event) -> None:
        try:
            self._send.send_nowait(event)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _adapt(self, event: ev.Event) -> list[ev.Event]:
        """The agent's events as the page expects them (reply text a sentence at a time)."""
        if isinstance(event, ev.ReplyText):
            return [ev.ReplyText(t=event.t, turn_id=event.turn_id, text=s)
                    for s in self._joiner.add(event.turn_id, event.text)]
        rest: str | None = None
        if isinstance(event, ev.ReplyInterrupted):
            rest = self._joiner.finish(event.turn_id, heard=event.heard_text)
        elif isinstance(event, ev.ReplyFinished):
            rest = self._joiner.finish(event.turn_id)
        if rest is not None:
            return [ev.ReplyText(t=event.t, turn_id=event.turn_id, text=rest), event]
        return [event]


def agent_recipe(model: str, assistant: Assistant | None = None, **options: Any) -> AgentRecipe:
    """A recipe for conversations with the ``voicekit.agents`` plugin ``model`` (e.g.
    ``"qwen3.5-omni-plus-realtime"``), whose tools are ``assistant``'s intents; ``options`` go to
    the plugin (``voicekit run --agent-option`` names). One agent is built at once, so a bad
    option or a missing key fails before the server listens."""
    from voicekit.plugins.registry import load

    factory = load("agents", model)
    probe = factory(assistant=assistant, **options)
    rate = int(getattr(probe, "sample_rate", 24000))
    return AgentRecipe(factory=lambda: factory(assistant=assistant, **options), model=model, reply_rate=rate,
                       assistant=assistant, turn_detection=getattr(probe, "turn_detection", None))
