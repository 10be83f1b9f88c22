"""Speaking a reply: the handler's pieces, one after another, synthesized ahead into a bounded
channel and played, all inside the reply's own cancel scope; the reply's events say what was
said and what the user actually heard."""

from __future__ import annotations

import functools
import math
from contextlib import aclosing

import attrs
import structlog
import trio

from voicekit import events as ev
from voicekit.audio.frame import AudioFrame
from voicekit.errors import HandlerError, VoicekitError, one_line
from voicekit.handlers.assistant import Assistant
from voicekit.session.eventlog import EventHub
from voicekit.session.handling import HandlerCall
from voicekit.session.player import ReplyPlayer
from voicekit.tts.base import TTSEngine


@attrs.define
class ReplyState:
    """One reply: its cancel scope (a barge-in cancels it) and what it has played so far."""

    turn_id: int
    text: str
    scope: trio.CancelScope
    done: trio.Event
    pieces: list[tuple[str, int]]  # (sentence, samples) as played
    synth_seconds: dict[int, float] = attrs.Factory(dict)  # piece index -> seconds synthesized
    interrupted: bool = False


class ReplyRunner:
    """Runs replies (one task each, see :meth:`run`) for a session's assistant, TTS and player."""

    def __init__(self, hub: EventHub, assistant: Assistant | None, tts: TTSEngine | None,
                 player: ReplyPlayer | None, *, language: str | None, buffer_frames: int) -> None:
        self._hub = hub
        self._assistant = assistant
        self._tts = tts
        self._player = player
        self._language = language
        self._buffer_frames = buffer_frames

    async def run(self, state: ReplyState, call: HandlerCall) -> None:
        """Read the handler's reply and speak it; ends with ``ReplyFinished`` or ``ReplyInterrupted``
        (nothing when the handler said nothing) and sets ``state.done``."""
        structlog.contextvars.bind_contextvars(turn_id=state.turn_id)
        hub, assistant = self._hub, self._assistant
        assert assistant is not None
        try:
            with state.scope:
                pieces = call.pieces(timeout=assistant.handler_timeout, limit=assistant.max_reply_chars,
                                     on_cut=functools.partial(self._reply_cut, state.turn_id))
                try:
                    async with aclosing(pieces):
                        async for piece in pieces:
                            await self._say(state, piece)
                except HandlerError as exc:
                    hub.emit(ev.Error(t=hub.now(), turn_id=state.turn_id, where="handler",
                                      message=str(exc), error_type=type(exc.__cause__ or exc).__name__))
                    await self._say(state, assistant.apology)
            rate = self._player.sink.sample_rate if self._player else 0
            played = sum(n for _, n in state.pieces)
            if state.scope.cancelled_caught or state.interrupted:
                hub.emit(ev.ReplyInterrupted(t=hub.now(), turn_id=state.turn_id, text=state.text,
                                             samples_played=played, sample_rate=rate,
                                             heard_text=heard(state, rate)))
            elif state.pieces:
                hub.emit(ev.ReplyFinished(t=hub.now(), turn_id=state.turn_id, text=state.text,
                                          samples_played=played, sample_rate=rate))
        finally:
            call.abandon()  # a reply cut before it read anything still stops its handler
            if self._player is not None:
                self._player.resume()
            state.done.set()
            structlog.contextvars.unbind_contextvars("turn_id")

    def _reply_cut(self, turn_id: int, what: str, length: int, limit: int) -> None:
        self._hub.emit(ev.Warning(t=self._hub.now(), turn_id=turn_id, where="handler",
                                  message=f"{what} replied with {length} characters; only the first {limit} "
                                          f"(max_reply_chars) are spoken", count=length - limit))

    async def _say(self, state: ReplyState, piece: str) -> None:
        hub = self._hub
        if not state.pieces:
            hub.emit(ev.ReplyStarted(t=hub.now(), turn_id=state.turn_id, text=piece))
            if self._player is not None:
                self._player.start_reply()
        state.text = (state.text + " " + piece).strip()
        hub.emit(ev.ReplyText(t=hub.now(), turn_id=state.turn_id, text=piece))
        await self._speak(state, piece)

    async def _speak(self, state: ReplyState, text: str) -> None:
        """Synthesize ahead into a bounded channel while the player plays from it."""
        index = len(state.pieces)
        state.pieces.append((text, 0))
        if self._tts is None or self._player is None:
            return
        player, tts, hub = self._player, self._tts, self._hub
        before = player.played
        send, recv = trio.open_memory_channel[AudioFrame](self._buffer_frames)

        async def produce() -> None:
            total = 0.0
            try:
                async with send, aclosing(tts.synthesize(text, language=self._language)) as frames:  # type: ignore[type-var]
                    async for frame in frames:
                        total += frame.duration
                        try:
                            send.send_nowait(frame)  # room in the buffer: no task switch
                        except trio.WouldBlock:
                            await send.send(frame)
                state.synth_seconds[index] = total
            except VoicekitError as exc:
                hub.emit(ev.Error(t=hub.now(), turn_id=state.turn_id, where="tts",
                                  message=one_line(exc, with_type=True), error_type=type(exc).__name__))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(produce)
                async with recv:
                    await player.play(recv)
        finally:
            state.pieces[index] = (text, player.played - before)


def heard(state: ReplyState, sink_rate: int) -> str:
    """The words of the reply the user actually heard, judged by the audio played: whole pieces
    that played to the end, then the played fraction of the piece that was cut."""
    words_heard: list[str] = []
    for i, (text, played) in enumerate(state.pieces):
        total = state.synth_seconds.get(i)
        played_s = played / sink_rate if sink_rate else 0.0
        if total is not None and played_s >= total - 1e-6:
            words_heard.append(text)
            continue
        words = text.split()
        if total:
            words_heard.extend(words[: math.floor(len(words) * played_s / total)])
        break
    return " ".join(words_heard)
