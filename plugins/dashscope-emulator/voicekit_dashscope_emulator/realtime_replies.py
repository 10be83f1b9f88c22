"""Answering on an emulated realtime connection: responses from the :class:`OmniScript`, tool
calls, reply audio or text streamed at real-time pace, cancellation, and the conversation items
a client creates or truncates.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio

from voicekit_dashscope.protocol.realtime import (
    AudioDelta,
    AudioDone,
    AudioTranscriptDelta,
    AudioTranscriptDone,
    ContentPartAdded,
    ContentPartDone,
    FunctionArgumentsDelta,
    FunctionArgumentsDone,
    ItemCreate,
    ItemCreated,
    ItemTruncate,
    OutputItemAdded,
    OutputItemDone,
    ResponseCreated,
    ResponseDone,
    TextDelta,
    TextDone,
)
from voicekit_dashscope_emulator.omni import WORDS, ToolRule
from voicekit_dashscope_emulator.realtime_state import ActiveResponse, ConnectionState, HistoryItem


@attrs.define
class _Message:
    """One assistant message being spoken: its response, item, history entry, and the words said so far."""

    resp: ActiveResponse
    item: dict[str, Any]
    hist: HistoryItem
    audio_out: bool
    said: list[str] = attrs.field(factory=list)

    @property
    def ids(self) -> dict[str, Any]:
        return {"response_id": self.resp.id, "item_id": self.hist.id}

    def spacer(self) -> str:
        """What goes before the latest word in a delta: nothing for the first."""
        return "" if len(self.said) == 1 else " "


class Replying(ConnectionState):
    """The answering half of a realtime connection."""

    def _take_tool_output(self) -> str | None:
        if not self.pending_tool_outputs:
            return None
        out = " ".join(self.pending_tool_outputs)
        self.pending_tool_outputs.clear()
        return out

    async def _start_response(self, *, transcript: str | None = None, tool_output: str | None = None) -> None:
        if self.response is not None:
            await self._cancel_response("new_turn")
        resp = ActiveResponse(self.ids("resp"), trio.CancelScope(), trio.Event())
        self.response = resp
        assert self.nursery is not None
        await self.send(ResponseCreated(response=self._response_obj(resp, "in_progress", [])))
        self.nursery.start_soon(self._run_response, resp, transcript, tool_output)

    def _response_obj(self, resp: ActiveResponse, status: str, output: list[Any], usage: Any = None) -> dict[str, Any]:
        cfg = self.proto.session
        d: dict[str, Any] = {"id": resp.id, "object": "realtime.response", "conversation_id": "conv_emulated",
                             "status": status, "modalities": cfg.get("modalities") or ["text", "audio"],
                             "voice": cfg.get("voice"), "output_audio_format": "pcm", "output": output}
        if usage is not None:
            d["usage"] = usage
        if status == self.settings.cancelled_status and status != "completed":
            d["status_details"] = {"type": status, "reason": resp.cancel_reason or "client_cancelled"}
        return d

    async def _run_response(self, resp: ActiveResponse, transcript: str | None, tool_output: str | None) -> None:
        try:
            if transcript is None and tool_output is None:
                transcript = await self._latest_turn()
            self._mark_answered(transcript)
            rule = self._tool_rule(transcript)
            if rule is not None:
                await self._tool_call(resp, rule)
            else:
                await self._speak(resp, transcript, tool_output)
        finally:
            if self.response is resp:
                self.response = None
            resp.done.set()

    async def _latest_turn(self) -> str:
        """response.create after a manual commit: the oldest user turn not answered yet (one response per
        turn), once the committed audio is transcribed."""
        with trio.move_on_after(self.settings.transcript_timeout_s):
            while any(u.committed for u in self.utterances):
                await trio.sleep(0.01)
        turn = next((h for h in self._unanswered(None) if h.status == "completed"), None)
        return turn.text if turn is not None else ""

    def _unanswered(self, transcript: str | None) -> list[HistoryItem]:
        """User turns not answered yet (with this text, if given)."""
        return [h for h in self.history
                if h.role == "user" and not h.answered and (transcript is None or h.text == transcript)]

    def _mark_answered(self, transcript: str | None) -> None:
        turn = next(iter(self._unanswered(transcript)), None)
        if turn is not None:
            turn.answered = True

    def _tool_rule(self, transcript: str | None) -> ToolRule | None:
        """The script's tool call for this transcript, among the tools the session declares."""
        if not transcript:
            return None
        return self.script.tool_for(transcript, [t.name for t in (self.proto.config.tools or ())])

    async def _tool_call(self, resp: ActiveResponse, rule: ToolRule) -> None:
        item_id = self.ids("item")
        call_id = "call_" + self.ids("x")[2:18]
        args = json.dumps(dict(rule.arguments), ensure_ascii=False)
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "function_call",
                                "status": "in_progress", "call_id": call_id, "name": rule.tool, "arguments": ""}
        await self.send(OutputItemAdded(response_id=resp.id, item=item))
        for i in range(0, len(args), 16):
            await self.send(FunctionArgumentsDelta(response_id=resp.id, item_id=item_id, call_id=call_id,
                                                   delta=args[i:i + 16]))
        await self.send(FunctionArgumentsDone(response_id=resp.id, item_id=item_id, call_id=call_id,
                                              name=rule.tool, arguments=args))
        done_item = {**item, "status": "completed", "arguments": args}
        await self.send(OutputItemDone(response_id=resp.id, item=done_item))
        self.history.append(HistoryItem(item_id, "assistant", f"{rule.tool}({args})", kind="function_call"))
        self.record.setdefault("tool_calls", []).append((rule.tool, dict(rule.arguments)))
        await self.send(ResponseDone(response=self._response_obj(resp, "completed", [done_item], self._usage(0))))

    def _usage(self, out_words: int) -> dict[str, Any]:
        return {"total_tokens": 100 + out_words, "input_tokens": 100, "output_tokens": out_words,
                "input_tokens_details": {"text_tokens": 0, "audio_tokens": 100},
                "output_tokens_details": {"text_tokens": out_words, "audio_tokens": 0}}

    def _reply_text(self, transcript: str | None, tool_output: str | None) -> str:
        cfg = self.proto.config
        if tool_output is not None:
            return self.script.after_tool.replace("{output}", tool_output)
        mods = tuple(sorted(cfg.modalities or ("audio", "text")))
        if mods == ("text",) and "transcri" in (cfg.instructions or "").lower():
            return transcript or ""
        text = self.script.reply(self.reply_index, transcript or "")
        self.reply_index += 1
        return text

    async def _speak(self, resp: ActiveResponse, transcript: str | None, tool_output: str | None) -> None:
        audio_out = "audio" in (self.proto.config.modalities or ("text", "audio"))
        text = self._reply_text(transcript, tool_output)
        msg = await self._open_message(resp, audio_out)
        with resp.scope:
            if audio_out:
                await self._say_audio(msg, text)
            else:
                await self._say_text(msg, text)
        cancelled = resp.scope.cancelled_caught
        if cancelled:
            self.speaking_until = 0.0
        with trio.CancelScope(shield=True):
            await self._close_message(msg, cancelled)

    async def _open_message(self, resp: ActiveResponse, audio_out: bool) -> _Message:
        """The assistant message item: in the history, announced, with its (empty) content part."""
        item_id = self.ids("item")
        resp.item_id = item_id
        item: dict[str, Any] = {"id": item_id, "object": "realtime.item", "type": "message",
                                "status": "in_progress", "role": "assistant", "content": []}
        msg = _Message(resp, item, HistoryItem(item_id, "assistant", ""), audio_out)
        self.history.append(msg.hist)
        await self.send(OutputItemAdded(response_id=resp.id, item=item))
        await self.send(ItemCreated(item=item, previous_item_id=self.last_item_id))
        self.last_item_id = item_id
        await self.send(ContentPartAdded(part={"type": "audio" if audio_out else "text", "text": ""}, **msg.ids))
        return msg

    async def _say_audio(self, msg: _Message, text: str) -> None:
        """The reply as audio, word by word with its transcript, at real-time pace if set."""
        rate = self.proto.config.output_rate(self.model)
        chunk = rate * self.settings.audio_chunk_ms // 1000 * 2
        sent_ms = 0.0
        began = trio.current_time()
        for word, pcm in await self.voice.render(text, rate):
            msg.hist.word_ms.append((round(sent_ms), word))
            msg.said.append(word)
            await self.send(AudioTranscriptDelta(delta=msg.spacer() + word, **msg.ids))
            for i in range(0, len(pcm), chunk):
                piece = pcm[i:i + chunk]
                await self.send(AudioDelta(delta=piece, **msg.ids))
                sent_ms += len(piece) / 2 / rate * 1000
                await self._pace(began, sent_ms)

    async def _pace(self, began: float, sent_ms: float) -> None:
        """Keep the audio sent at most ``audio_lead_s`` ahead of real time (scaled by ``pace``; 0: no pacing)."""
        pace = self.settings.pace
        if not pace:
            return
        self.speaking_until = began + sent_ms / 1000 * pace
        ahead = sent_ms / 1000 - self.settings.audio_lead_s
        await trio.sleep_until(began + max(0.0, ahead) * pace)

    async def _say_text(self, msg: _Message, text: str) -> None:
        for word in WORDS.findall(text):
            msg.said.append(word)
            await self.send(TextDelta(delta=msg.spacer() + word, **msg.ids))
            if self.settings.pace:
                await trio.sleep(0.02 * self.settings.pace)

    async def _close_message(self, msg: _Message, cancelled: bool) -> None:
        """What was said (all of it, or up to the cancel) as the done events of the part, item and response."""
        status = self.settings.cancelled_status if cancelled else "completed"
        spoken = " ".join(msg.said)
        msg.hist.text = spoken
        msg.hist.status = status
        self.record.setdefault("assistant", []).append(spoken)
        part = await self._close_part(msg, spoken)
        await self.send(ContentPartDone(part=part, **msg.ids))
        done_item = {**msg.item, "status": "incomplete" if cancelled else "completed", "content": [part]}
        await self.send(OutputItemDone(response_id=msg.resp.id, item=done_item))
        await self.send(ResponseDone(response=self._response_obj(msg.resp, status, [done_item],
                                                                 self._usage(len(msg.said)))))

    async def _close_part(self, msg: _Message, spoken: str) -> dict[str, Any]:
        if msg.audio_out:
            await self.send(AudioTranscriptDone(transcript=spoken, **msg.ids))
            await self.send(AudioDone(**msg.ids))
            return {"type": "audio", "transcript": spoken}
        await self.send(TextDone(text=spoken, **msg.ids))
        return {"type": "text", "text": spoken}

    async def _item_create(self, event: ItemCreate) -> None:
        item = dict(event.item)
        raw_id = item.get("id")
        item_id = raw_id if isinstance(raw_id, str) else self.ids("item")
        if item.get("type") == "function_call_output":
            self.pending_tool_outputs.append(str(item.get("output", "")))
            self.history.append(HistoryItem(item_id, "tool", str(item.get("output", "")), kind="function_call_output"))
            self.record.setdefault("tool_outputs", []).append(item.get("output"))
        else:
            self.history.append(HistoryItem(item_id, str(item.get("role", "user")), json.dumps(item.get("content"))))
        if self.settings.ack_item_create:
            await self.send(ItemCreated(item={**item, "id": item_id}, previous_item_id=self.last_item_id))
            self.last_item_id = item_id

    def _truncate(self, event: ItemTruncate) -> None:
        for h in self.history:
            if h.id == event.item_id and h.role == "assistant":
                h.text = " ".join(w for ms, w in h.word_ms if ms < event.audio_end_ms)
                h.status = "truncated"
                self.record.setdefault("truncated", []).append(h.text)
