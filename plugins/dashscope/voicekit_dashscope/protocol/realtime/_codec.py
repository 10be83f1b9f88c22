"""Realtime events to and from the JSON text of WebSocket frames.

:func:`encode` writes any event; :func:`decode_client` reads what a client sends (an unknown
``type`` is refused, as the service does) and :func:`decode_server` what a server sends (an
unknown ``type`` is kept as :class:`UnknownServerEvent`, so a newer server does not break us).
Every malformed frame raises :class:`ProtocolError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from voicekit_dashscope.protocol._util import ProtocolError
from voicekit_dashscope.protocol.realtime._events import (
    CLIENT_TYPES,
    SERVER_TYPES,
    AudioAppend,
    AudioDelta,
    ClientEvent,
    ErrorEvent,
    ErrorInfo,
    Event,
    ImageAppend,
    ItemCreate,
    ItemTruncate,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ResponsePart,
    ServerEvent,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    UnknownServerEvent,
)
from voicekit_dashscope.protocol.realtime._session import F, parse_session

MAX_FRAME_CHARS = 24 * 1024 * 1024  # a 15 MiB audio append is ~20 MiB of base64
MAX_APPEND_BYTES = 15 * 1024 * 1024
_OPTIONAL_WHEN_NONE = ("language", "emotion", "previous_item_id")  # left out of the frame when None


# ---- encoding


def encode(event: Event) -> str:
    """One event as the JSON text of a WebSocket frame."""
    d: dict[str, Any] = {}
    if event.event_id is not None:
        d["event_id"] = event.event_id
    if isinstance(event, UnknownServerEvent):
        return json.dumps({**event.raw, **d, "type": event.type}, ensure_ascii=False)
    d["type"] = event.TYPE
    special = _ENCODERS.get(type(event))
    d.update(special(event) if special is not None else _fields_json(event))
    return json.dumps(d, ensure_ascii=False)


def encode_audio_append(event_id: str, pcm: bytes) -> str:
    """``encode(AudioAppend(audio=pcm, event_id=event_id))``, the same text, without building the event
    or passing the base64 (which needs no escaping) through the JSON encoder: the hot path of a stream."""
    quoted = '"' + event_id + '"' if _PLAIN_ID(event_id) else json.dumps(event_id, ensure_ascii=False)
    return ''.join(('{"event_id": ', quoted, ', "type": "input_audio_buffer.append", "audio": "',
                    binascii.b2a_base64(pcm, newline=False).decode("ascii"), '"}'))


_PLAIN_ID = re.compile(r"[A-Za-z0-9_\-]*").fullmatch  # ids that need no JSON escaping (ours)


def _fields_json(event: Event) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for f in attrs.fields(type(event)):
        value = getattr(event, f.name)
        if f.name == "event_id" or (value is None and f.name in _OPTIONAL_WHEN_NONE):
            continue
        d[f.name] = dict(value) if isinstance(value, Mapping) else value
    return d


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _response_create_json(e: ResponseCreate) -> dict[str, Any]:
    if e.instructions is None and e.modalities is None:
        return {}
    r: dict[str, Any] = {"instructions": e.instructions}
    if e.modalities is not None:
        r["modalities"] = list(e.modalities)
    return {"response": r}


def _part_ids(e: ResponsePart) -> dict[str, Any]:
    return {"response_id": e.response_id, "item_id": e.item_id, "output_index": e.output_index,
            "content_index": e.content_index}


_ENCODERS: dict[type[Event], Callable[[Any], dict[str, Any]]] = {
    SessionUpdate: lambda e: {"session": e.session.to_json()},
    AudioAppend: lambda e: {"audio": _b64(e.audio)},
    ImageAppend: lambda e: {"image": _b64(e.image)},
    ResponseCreate: _response_create_json,
    ErrorEvent: lambda e: {"error": e.error.to_json()},
    AudioDelta: lambda e: {**_part_ids(e), "delta": _b64(e.delta)},
}


# ---- decoding


def _load(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        raise ProtocolError("realtime frames are JSON text; got a binary frame")
    if len(frame) > MAX_FRAME_CHARS:
        raise ProtocolError(f"realtime frame of {len(frame)} characters is too large "
                            f"(limit {MAX_FRAME_CHARS}); send audio in smaller appends")
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        shown = frame[:40] + ("..." if len(frame) > 40 else "")
        raise ProtocolError(f"realtime frame is not valid JSON: {shown!r}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"realtime frame must be a JSON object, got {type(obj).__name__}")
    t = obj.get("type")
    if not isinstance(t, str) or not t:
        raise ProtocolError("realtime frame has no 'type' string")
    F.text(obj, "event_id")
    return obj


def decode_client(frame: str | bytes) -> ClientEvent:
    """A client event; unknown types raise :class:`ProtocolError` (the server refuses them)."""
    d = _load(frame)
    t, eid = d["type"], d.get("event_id")
    cls = CLIENT_TYPES.get(t)
    if cls is None:
        raise ProtocolError(f"invalid event type {t!r}")
    special = _CLIENT_DECODERS.get(cls)
    if special is None:  # commit, clear, cancel, finish: no fields
        return cls(event_id=eid)  # type: ignore[return-value]
    return special(d, eid)  # type: ignore[no-any-return]


def _session_update(d: dict[str, Any], eid: str | None) -> SessionUpdate:
    s = F.mapping(d, "session", required=True)
    assert s is not None
    return SessionUpdate(session=parse_session(s), event_id=eid)


def _response_create(d: dict[str, Any], eid: str | None) -> ResponseCreate:
    r = F.mapping(d, "response") or {}
    return ResponseCreate(instructions=F.text(r, "instructions", "response.instructions"),
                          modalities=F.strings(r, "modalities", "response.modalities"), event_id=eid)


def _item_create(d: dict[str, Any], eid: str | None) -> ItemCreate:
    item = F.mapping(d, "item", required=True)
    assert item is not None
    F.text(item, "type", "item.type", required=True)
    if item.get("type") == "function_call_output":
        F.text(item, "call_id", "item.call_id", required=True)
        out = item.get("output")
        if not isinstance(out, str):
            raise F.fail("item.output", "a string (serialise tool results as JSON text)", out)
    return ItemCreate(item=item, event_id=eid)


def _item_truncate(d: dict[str, Any], eid: str | None) -> ItemTruncate:
    return ItemTruncate(item_id=F.text(d, "item_id", required=True) or "",
                        content_index=F.integer(d, "content_index") or 0,
                        audio_end_ms=F.integer(d, "audio_end_ms", required=True) or 0, event_id=eid)


_CLIENT_DECODERS: dict[type[Event], Callable[[dict[str, Any], str | None], Any]] = {
    SessionUpdate: _session_update,
    AudioAppend: lambda d, eid: AudioAppend(audio=F.b64(d, "audio"), event_id=eid),
    ImageAppend: lambda d, eid: ImageAppend(image=F.b64(d, "image"), event_id=eid),
    ResponseCreate: _response_create,
    ItemCreate: _item_create,
    ItemTruncate: _item_truncate,
}


def decode_server(frame: str | bytes) -> ServerEvent:
    """A server event; unknown types become :class:`UnknownServerEvent`."""
    d = _load(frame)
    t, eid = d["type"], d.get("event_id")
    cls = SERVER_TYPES.get(t)
    if cls is None:
        return UnknownServerEvent(type=t, raw=d, event_id=eid)
    special = _SERVER_DECODERS.get(cls)
    if special is not None:
        return special(cls, d, eid)  # type: ignore[no-any-return]
    return cls(event_id=eid, **_fields_from(cls, d))  # type: ignore[return-value]


def _fields_from(cls: type[Event], d: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` read from ``d`` by their declared type (str, int or a mapping)."""
    kw: dict[str, Any] = {}
    for f in attrs.fields(cls):
        if f.name == "event_id":
            continue
        required = f.default is attrs.NOTHING
        if f.type in ("str", "str | None"):
            value: Any = F.text(d, f.name, required=required)
        elif f.type in ("int", "int | None"):
            value = F.integer(d, f.name, required=required)
        else:  # a mapping
            value = F.mapping(d, f.name, required=required)
        if value is not None or f.type in ("str | None", "int | None"):
            kw[f.name] = value
    return kw


def _error_event(cls: type[Event], d: dict[str, Any], eid: str | None) -> ErrorEvent:
    e = F.mapping(d, "error", required=True)
    assert e is not None
    return ErrorEvent(error=ErrorInfo(F.text(e, "type", "error.type") or "error",
                                      F.text(e, "code", "error.code"),
                                      F.text(e, "message", "error.message") or "",
                                      F.text(e, "param", "error.param"),
                                      F.text(e, "event_id", "error.event_id")), event_id=eid)


def _session_event(cls: type[Event], d: dict[str, Any], eid: str | None) -> Event:
    return cls(session=F.mapping(d, "session", required=True) or {}, event_id=eid)  # type: ignore[call-arg]


def _response_event(cls: type[Event], d: dict[str, Any], eid: str | None) -> Event:
    r = F.mapping(d, "response", required=True)
    assert r is not None
    F.text(r, "id", "response.id", required=True)
    F.text(r, "status", "response.status")
    return cls(response=r, event_id=eid)  # type: ignore[call-arg]


def _audio_delta(cls: type[Event], d: dict[str, Any], eid: str | None) -> AudioDelta:
    return AudioDelta(delta=F.b64(d, "delta"), event_id=eid,
                      response_id=F.text(d, "response_id", required=True) or "",
                      item_id=F.text(d, "item_id"),
                      output_index=F.integer(d, "output_index") or 0,
                      content_index=F.integer(d, "content_index") or 0)


_SERVER_DECODERS: dict[type[Event], Callable[[type[Event], dict[str, Any], str | None], Any]] = {
    ErrorEvent: _error_event,
    SessionCreated: _session_event,
    SessionUpdated: _session_event,
    ResponseCreated: _response_event,
    ResponseDone: _response_event,
    AudioDelta: _audio_delta,
}
