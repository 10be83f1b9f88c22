"""The input side of a session: source ─► resample ─► echo guard ─► endpointer (VAD) ─► ASR,
and the ASR's transcripts handed to the turns.

Input that may wait (``audio_policy="block"``, a file) is read, endpointed and fed to the ASR in
one task, frame by frame, with no hop between the stages. Live input (``"drop_oldest"``) is read
by a task of its own into a bounded channel that drops the oldest audio, so the source never
waits for the pipeline. Frames that arrived together are then handled in one go.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from voicekit import events as ev
from voicekit.asr.base import ASREngine, ASRStream, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.audio.resample import StreamResampler
from voicekit.audio.sources import AudioSource
from voicekit.session.announcements import AudioTime
from voicekit.session.channels import BoundedChannel
from voicekit.session.eventlog import EventHub
from voicekit.session.player import ReplyPlayer
from voicekit.session.turns import Turns
from voicekit.vad.base import VADBackend
from voicekit.vad.endpointer import Endpointer, SpeechEnd, SpeechStart

if TYPE_CHECKING:
    from voicekit.session.session import SessionConfig

Feed = Callable[[AudioFrame], Awaitable[None]]


class Listener:
    """Runs a session's input through the pipeline (:meth:`run`), keeping ``audio`` (the audio
    seconds heard) and the interruption policy up to date frame by frame."""

    def __init__(self, source: AudioSource, *, vad: VADBackend, asr: ASREngine, config: SessionConfig,
                 player: ReplyPlayer | None, turns: Turns, hub: EventHub, audio: AudioTime) -> None:
        self.source = source
        self.vad = vad
        self._asr = asr
        self._endpointer_config = config.endpointer
        self._echo = config.echo
        self._live = config.audio_policy == "drop_oldest"
        self._buffer_frames = config.audio_buffer_frames
        self._player = player
        self._turns = turns
        self._hub = hub
        self._audio = audio
        self.dropped = 0  # live input dropped because the pipeline fell behind
        self._speech_voiced = 0.0
        self._voiced_at = 0.0
        self._in_speech = False
        self._endpointer: Endpointer = Endpointer(vad, config.endpointer)
        self._to_asr: StreamResampler | None = None
        self._inline: trio.MemoryReceiveChannel[TranscriptResult] | None = None  # see _open_inline
        self._queue: trio.MemorySendChannel[TranscriptResult] | None = None
        self._queued = 0  # results in the queue or being handled by _recognize_queued

    async def run(self, stream: ASRStream) -> None:
        """Until the input has ended and the recognizer's last result has been handled."""
        queue = self._open_inline(stream)
        audio: BoundedChannel[AudioFrame] | None = None
        try:
            async with trio.open_nursery() as n:
                if self._live:
                    # a live source must never wait for the pipeline: a task of its own reads it
                    # into a bounded channel that drops the oldest audio
                    audio = BoundedChannel(self._buffer_frames, "drop_oldest")
                    n.start_soon(self._capture, audio)
                    n.start_soon(self._listen, audio, stream)
                else:
                    # the source may wait: it feeds VAD, endpointer and ASR in its own task, frame
                    # by frame, with no hop between them
                    n.start_soon(self._listen_inline, stream)
                if self._inline is not None:
                    assert queue is not None
                    n.start_soon(self._recognize_queued, queue)
                else:
                    n.start_soon(self._recognize, stream)
        finally:
            if audio is not None:
                self.dropped = audio.dropped

    def _open_inline(self, stream: ASRStream) -> trio.MemoryReceiveChannel[TranscriptResult] | None:
        """A stream that says it ``delivers_inline`` (voicekit.asr.base) has its results taken by
        the feeding task right after each call, with no hop to a recognizer task; the turns that
        must wait for a reply go, in order, through a small queue to a task that waits."""
        self._inline = self._queue = None
        self._queued = 0
        if not getattr(stream, "delivers_inline", False):
            return None
        results = stream.__aiter__()
        if not isinstance(results, trio.MemoryReceiveChannel):
            return None
        self._inline = results
        self._queue, queue = trio.open_memory_channel[TranscriptResult](64)
        return queue

    def _prepare(self) -> Callable[[AudioFrame], AudioFrame | None]:
        """Source frame → mono frame at the VAD's rate, through the echo guard (None: the
        resampler holds it back for now). The returned function keeps the resampler's state;
        its ``flush`` attribute returns the resampler's tail at the end of the input."""
        rate = self.vad.sample_rate
        echo = self._echo
        resampler: StreamResampler | None = None

        def prepare(frame: AudioFrame) -> AudioFrame | None:
            nonlocal resampler
            if frame.sample_rate != rate or frame.channels != 1:
                if resampler is None:
                    resampler = StreamResampler(frame.sample_rate, rate, frame.channels, 1)
                out = resampler.process(frame)
                if out is None:
                    return None
                frame = out
            if echo is not None:
                frame = echo.process(frame)
            return frame

        def flush() -> AudioFrame | None:
            tail = resampler.flush() if resampler is not None else None
            return tail if tail is not None and tail.samples else None

        prepare.flush = flush  # type: ignore[attr-defined]
        return prepare

    async def _capture(self, audio: BoundedChannel[AudioFrame]) -> None:
        """Live input (``audio_policy="drop_oldest"``): read the source into the channel."""
        prepare = self._prepare()
        put, size = audio.put_nowait, audio.size
        waiting = audio.send_channel.statistics
        try:
            async for frame in self.source.frames():
                out = prepare(frame)
                if out is not None:
                    # the source's own wait was this task's checkpoint: no hop of its own per
                    # frame. Only when the channel is full (a source that hands out frames without
                    # waiting) does it give the listener two rounds to take some before dropping
                    if waiting().current_buffer_used >= size:
                        await trio.lowlevel.checkpoint()
                        if waiting().current_buffer_used >= size:
                            await trio.lowlevel.checkpoint()
                    put(out)
            tail = prepare.flush()  # type: ignore[attr-defined]
            if tail is not None:
                await audio.send(tail)
        finally:
            await audio.aclose()
            await self.source.aclose()

    async def _listen(self, audio: BoundedChannel[AudioFrame], stream: ASRStream) -> None:
        """Live input: VAD, endpointer and ASR for what ``_capture`` queued; frames that arrived
        together are handled in one go."""
        self._endpointer = Endpointer(self.vad, self._endpointer_config)
        feed = self._feeder(stream)
        recv = audio.receive_channel
        async with recv:
            while True:
                try:
                    frame = recv.receive_nowait()
                except trio.WouldBlock:
                    try:
                        frame = await recv.receive()
                    except trio.EndOfChannel:
                        break
                except trio.EndOfChannel:
                    break
                await feed(frame)
        await self._finish_input(stream)

    async def _listen_inline(self, stream: ASRStream) -> None:
        """Input that may wait (``audio_policy="block"``): the source's frames go through VAD,
        endpointer and ASR in this one task; a slow stage holds the source back directly."""
        self._endpointer = Endpointer(self.vad, self._endpointer_config)
        feed = self._feeder(stream)
        prepare = self._prepare()
        rate, echo = self.vad.sample_rate, self._echo
        player = self._player if self._player is not None and self._player.pace else None
        if player is not None:
            player.clock_by_input(True)
        try:
            async for frame in self.source.frames():
                # a frame already mono at the VAD's rate, with no echo guard, goes as it is
                if frame.sample_rate == rate and frame.channels == 1 and echo is None:
                    await feed(frame)
                else:
                    out = prepare(frame)
                    if out is not None:
                        await feed(out)
                if player is not None:
                    player.tick()
            tail = prepare.flush()  # type: ignore[attr-defined]
        finally:
            if player is not None:
                player.clock_by_input(False)  # the input ended: the player keeps time itself
            await self.source.aclose()
        if tail is not None:
            await feed(tail)
        await self._finish_input(stream)

    async def _finish_input(self, stream: ASRStream) -> None:
        to_asr = self._to_asr
        for item in self._endpointer.flush():
            if isinstance(item, AudioFrame):
                await self._send_audio(item, stream, to_asr)
                self._on_audio(item)
                if self._inline is not None:
                    await self._take_results()
            else:
                await self._on_marker(item, stream)
        await stream.finish()
        if self._queue is not None:
            await self._take_results()
            await self._queue.aclose()  # the queued turns' task ends once they are done

    def _feeder(self, stream: ASRStream) -> Feed:
        """The per-frame work: endpointer (VAD) → ASR → interruption policy, in that order."""
        asr_rate = self._asr.capabilities.preferred_rate
        self._to_asr = to_asr = StreamResampler(self.vad.sample_rate, asr_rate) \
            if asr_rate != self.vad.sample_rate else None
        process = self._endpointer.process
        send_audio = stream.send_audio
        on_audio = self._on_audio
        on_marker = self._on_marker
        frame_type = AudioFrame
        inline = self._inline
        take = self._handle_results
        # a VAD that can score ahead (voicekit.vad.base) gets each frame first: the windows of
        # every session due at the same moment are then scored in one batched call
        prepare = getattr(self.vad, "prepare", None)

        async def feed(frame: AudioFrame) -> None:
            if prepare is not None:
                await prepare(frame.pcm)
            for item in process(frame):
                if type(item) is frame_type:
                    if to_asr is None:
                        await send_audio(item)
                    else:
                        await self._send_audio(item, stream, to_asr)
                    on_audio(item)
                    if inline is not None:
                        try:  # a result the call just made produced (rare): no coroutine per frame
                            result = inline.receive_nowait()
                        except (trio.WouldBlock, trio.EndOfChannel):
                            continue
                        await take(result)
                else:
                    await on_marker(item, stream)  # type: ignore[arg-type]

        return feed

    @staticmethod
    async def _send_audio(frame: AudioFrame, stream: ASRStream, to_asr: StreamResampler | None) -> None:
        if to_asr is None:
            await stream.send_audio(frame)
            return
        out = to_asr.process(frame)
        if out is not None:
            await stream.send_audio(out)

    def _on_audio(self, frame: AudioFrame) -> None:
        # frame.end, for the endpointer's mono frames, without three property calls per frame
        end = frame.timestamp + (len(frame.pcm) >> 1) / frame.sample_rate
        audio = self._audio
        if end > audio.position:
            audio.position = end
            if audio.waiters:
                audio.advance(end)
        turns = self._turns
        reply = turns.reply
        if reply is None or reply.done.is_set():
            return  # the per-frame policy calls matter only while a reply plays (reset() at each)
        if self._in_speech:
            # span of the user's speech so far: first voiced frame to the latest voiced frame
            last = min(end, self._endpointer.last_voiced_end)
            self._speech_voiced = max(0.0, last - self._voiced_at)
            turns.decide(turns.policy.on_voiced_audio(end, self._speech_voiced))
        else:
            turns.decide(turns.policy.on_tick(end))

    async def _on_marker(self, item: SpeechStart | SpeechEnd, stream: ASRStream) -> None:
        hub, turns = self._hub, self._turns
        if isinstance(item, SpeechStart):
            self._in_speech = True
            self._speech_voiced = 0.0
            self._voiced_at = item.voiced_at
            hub.emit(ev.SpeechStarted(t=hub.now(), audio_t=item.t))
            turns.decide(turns.policy.on_speech_started(item.t))  # pause or cut before the ASR call
            await stream.speech_started(item.t)
            if self._inline is not None:
                await self._take_results()
        else:
            self._in_speech = False
            if self._inline is None:
                hub.emit(ev.SpeechEnded(t=hub.now(), audio_t=item.t, duration=item.duration))
                await stream.speech_ended(item.t)
                turns.decide(turns.policy.on_speech_ended(item.t))
                return
            # the final comes inline: SpeechEnded and the turn's events reach subscribers once the
            # handler has taken its first step (exact times all the same, see EventHub.hold)
            with hub.holding():
                hub.emit(ev.SpeechEnded(t=hub.now(), audio_t=item.t, duration=item.duration))
                await stream.speech_ended(item.t)
                turns.decide(turns.policy.on_speech_ended(item.t))
                await self._take_results()

    async def _recognize(self, stream: ASRStream) -> None:
        turns, hub = self._turns, self._hub
        async for result in stream:
            with hub.holding():  # the turn's events go out once its handler has begun
                if not turns.on_result(result):
                    continue
                if turns.turn_now(result):
                    await turns.launch_reply()
                    continue
            await turns.start_turn_after_reply(result)  # waits for the reply playing: events not held

    async def _recognize_queued(self, queue: trio.MemoryReceiveChannel[TranscriptResult]) -> None:
        """Inline results that had to wait (a request made during a reply), in order."""
        async with queue:
            async for result in queue:
                await self._turns.start_turn(result)
                self._queued -= 1

    async def _take_results(self) -> None:
        """Results an inline stream produced during the call just made: handled here, in the
        feeding task, unless a turn has to wait for a reply (then, in order, by a task)."""
        recv = self._inline
        assert recv is not None
        try:
            result = recv.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return
        await self._handle_results(result)

    async def _handle_results(self, result: TranscriptResult) -> None:
        """``result`` and every further one the inline stream holds, as :meth:`_take_results`."""
        recv, queue, turns = self._inline, self._queue, self._turns
        assert recv is not None and queue is not None
        with self._hub.holding():  # a turn's events go out once its handler has begun
            while True:
                if self._queued:  # an earlier turn waits: this result goes after it
                    self._queued += 1
                    await queue.send(result)
                elif turns.on_result(result):
                    if turns.turn_now(result):
                        await turns.launch_reply()
                    else:
                        self._queued += 1
                        await queue.send(result)
                try:
                    result = recv.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    return
