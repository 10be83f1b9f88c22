"""Turns: what each transcript means for the conversation.

A final transcript becomes a turn (``TurnEnded``, then ``IntentMatched`` when the assistant knows
the request); its handler starts at once and its reply runs in a cancel scope of its own. While a
reply plays, the interruption policy's decisions pause, resume or cancel it, and a request made
over it waits until it has finished (a backchannel, "uh-huh", is no turn at all).
"""

from __future__ import annotations

import functools
from typing import Any

import trio

from voicekit import events as ev
from voicekit.asr.base import TranscriptResult
from voicekit.handlers.assistant import Assistant, Turn
from voicekit.handlers.protocol import Handler
from voicekit.session.announcements import Announcements, AudioTime
from voicekit.session.eventlog import EventHub
from voicekit.session.handling import HandlerCall, HandlerRunner
from voicekit.session.interruption import Decision, InterruptionPolicy
from voicekit.session.player import ReplyPlayer
from voicekit.session.replies import ReplyRunner, ReplyState


class Turns:
    """The conversation state of a session: the turn count, the current reply, the handler just
    started and its announcements. :meth:`begin` gives it the nurseries its tasks run in."""

    def __init__(self, *, hub: EventHub, assistant: Assistant | None, policy: InterruptionPolicy,
                 player: ReplyPlayer | None, replies: ReplyRunner, audio: AudioTime,
                 context: dict[str, Any], paced: bool) -> None:
        self._hub = hub
        self._assistant = assistant
        self.policy = policy
        self._player = player
        self._run_reply = replies.run
        self._audio = audio
        self._context = context
        self.reply: ReplyState | None = None  # the latest reply (done once it has finished)
        self._count = 0
        self._handlers: HandlerRunner | None = None
        self._replies: trio.Nursery | None = None
        self._launch: tuple[ReplyState, HandlerCall] | None = None  # a reply whose reader is not started
        self.announcements = Announcements(paced=paced, now=hub.now, audio=audio,
                                           quiet=self.wait_quiet, say=self._announce)

    def begin(self, handlers: HandlerRunner, replies: trio.Nursery, scheduled: trio.Nursery) -> None:
        self._handlers = handlers
        self._replies = replies
        self.announcements.begin(scheduled)

    @property
    def playing(self) -> bool:
        reply = self.reply
        return reply is not None and not reply.done.is_set()

    def on_result(self, result: TranscriptResult) -> bool:
        """The transcript event and the policy's say; True when the result should become a turn."""
        self._hub.emit(_transcript_event(self._hub.now(), result))
        playing = self.playing
        if not result.is_final:
            if playing:
                self.decide(self.policy.on_partial(result.text))
            return False
        on_final = getattr(self.policy, "on_final", None)  # optional: policies may decide on finals
        if on_final is not None and playing:
            self.decide(on_final(result.text))
        return bool(result.text.strip())

    async def start_turn(self, result: TranscriptResult) -> None:
        """A final that :meth:`on_result` accepted: its turn now, or once the reply has finished."""
        if self.turn_now(result):
            await self.launch_reply()
        else:
            await self.start_turn_after_reply(result)

    async def start_turn_after_reply(self, result: TranscriptResult) -> None:
        """A request made over a reply (:meth:`turn_now` said False): its turn once the reply has finished."""
        await self.wait_quiet()
        self._open_turn(result)
        await self.launch_reply()

    def turn_now(self, result: TranscriptResult) -> bool:
        """Open the turn at once if nothing is playing (or drop a backchannel said over a reply);
        False when it has to wait for the reply to finish."""
        if self.playing:
            # the user spoke during a reply and the policy did not interrupt it
            check = getattr(self.policy, "is_backchannel", None)
            if check is not None and check(result.text):
                return True  # "uh-huh" while the assistant talks is not a turn
            return False
        self._open_turn(result)
        return True

    def _open_turn(self, result: TranscriptResult) -> None:
        hub = self._hub
        self._count += 1
        turn_id = self._count
        hub.emit(ev.TurnEnded(t=hub.now(), turn_id=turn_id, text=result.text))
        if self._assistant is None:
            return
        match = self._assistant.match(result.text)
        if match is None:
            return
        hub.emit(ev.IntentMatched(t=hub.now(), turn_id=turn_id, intent=match.intent, slots=match.slots))
        # unpaced input: announcements count audio seconds from the end of what the user said
        heard_at = result.end if result.end is not None else self._audio.position
        turn = Turn(text=result.text, intent=match.intent, slots=match.slots, turn_id=turn_id,
                    context=self._context, language=result.language, emotion=result.emotion,
                    speaker=result.speaker,
                    scheduler=functools.partial(self.announcements.schedule, heard_at=heard_at))
        self._start_reply(turn, match.handler)

    def _start_reply(self, turn: Turn, handler: Handler) -> None:
        """Start the handler now (it is called in the scheduler's next round); the task that reads
        and plays its reply is started by :meth:`launch_reply`, which every caller awaits next."""
        state = ReplyState(turn.turn_id, "", trio.CancelScope(), trio.Event(), [])
        self.reply = state
        self.policy.reset()
        assert self._handlers is not None
        self._launch = (state, self._handlers.start(handler, turn))

    async def launch_reply(self) -> None:
        """Let the handler just started take the next round on its own (the caller's own work,
        reading the next frame say, waits one round), then start the reply task that reads it."""
        launch, self._launch = self._launch, None
        if launch is None:
            return
        state, call = launch
        assert self._replies is not None and self._handlers is not None
        try:
            await call.entry.began.wait()
        finally:
            self._replies.start_soon(self._run_reply, state, call)
        self._handlers.spare()  # a task waits for the next handler (started now, off the hand-off)

    async def wait_quiet(self) -> None:
        """Until no reply is playing (a reply that starts meanwhile is waited for too)."""
        while self.reply is not None and not self.reply.done.is_set():
            await self.reply.done.wait()

    async def _announce(self, text: str, due: float) -> None:
        """Say an announcement that fell due, as a turn of its own; returns when it has been said."""

        async def say(turn: Turn) -> str:
            return text

        self._count += 1
        turn = Turn(text="", intent="announcement", slots={}, turn_id=self._count, context=self._context,
                    scheduler=functools.partial(self.announcements.schedule, heard_at=due))
        self._start_reply(turn, say)
        await self.launch_reply()
        if self.reply is not None:
            await self.reply.done.wait()

    def decide(self, decision: Decision) -> None:
        """Apply the interruption policy's decision to the reply playing (if any)."""
        reply = self.reply
        if reply is None or decision is Decision.NONE or reply.done.is_set():
            return
        if decision is Decision.INTERRUPT:
            reply.interrupted = True
            reply.scope.cancel()
        elif decision is Decision.PAUSE and self._player is not None:
            self._player.pause()
        elif decision is Decision.RESUME and self._player is not None:
            self._player.resume()


def _transcript_event(t: float, r: TranscriptResult) -> ev.Transcript:
    return ev.Transcript(t=t, text=r.text, is_final=r.is_final, utterance_id=r.utterance_id, start=r.start,
                         end=r.end, words=r.words, language=r.language, emotion=r.emotion, speaker=r.speaker)
