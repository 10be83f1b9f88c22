"""Drives the official ``dashscope`` SDK, unchanged, against whatever the environment points at.

Run by the conformance tests in a subprocess (the SDK reads its base URLs from the environment at
import time)::

    DASHSCOPE_WEBSOCKET_BASE_URL=ws://127.0.0.1:PORT/api-ws/v1/inference \
    DASHSCOPE_HTTP_BASE_URL=http://127.0.0.1:PORT/api/v1 \
    DASHSCOPE_API_KEY=... python testkit/sdk_driver.py MODE [ARGS]

Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import wave


def recognition_call(path: str, model: str) -> dict:
    from dashscope.audio.asr import Recognition

    rec = Recognition(model=model, callback=None, format="wav", sample_rate=16000)
    result = rec.call(path)
    sentences = result.get_sentence() or []
    return {"status_code": result.status_code, "code": result.code, "message": result.message,
            "sentences": [{"text": s["text"], "begin_time": s["begin_time"], "end_time": s["end_time"],
                           "words": len(s.get("words") or [])} for s in sentences]}


def recognition_stream(path: str, model: str, vocabulary_id: str | None) -> dict:
    from dashscope.audio.asr import Recognition, RecognitionCallback, RecognitionResult

    events: list[dict] = []
    state = {"open": 0, "complete": 0, "close": 0, "error": None}
    done = threading.Event()

    class Callback(RecognitionCallback):
        def on_open(self) -> None:
            state["open"] += 1

        def on_complete(self) -> None:
            state["complete"] += 1
            done.set()

        def on_error(self, result: RecognitionResult) -> None:
            state["error"] = {"code": result.code, "message": result.message}
            done.set()

        def on_close(self) -> None:
            state["close"] += 1

        def on_event(self, result: RecognitionResult) -> None:
            s = result.get_sentence()
            events.append({"text": s["text"], "final": RecognitionResult.is_sentence_end(s),
                           "sentence_id": s.get("sentence_id"), "usage": result.get_usage(s)})

    kwargs = {"vocabulary_id": vocabulary_id} if vocabulary_id else {}
    rec = Recognition(model=model, callback=Callback(), format="pcm", sample_rate=16000,
                      semantic_punctuation_enabled=False, heartbeat=False, language_hints=["en"], **kwargs)
    rec.start()
    with wave.open(path, "rb") as w:
        pcm = w.readframes(w.getnframes())
    for i in range(0, len(pcm), 3200):
        rec.send_audio_frame(pcm[i:i + 3200])
        time.sleep(0.001)
    # give the service time to answer before stopping, like the SDK samples do
    done.wait(timeout=0.1)
    rec.stop()
    return {"state": state, "events": events, "request_id": rec.get_last_request_id()}


def vocabulary(target_model: str) -> dict:
    from dashscope.audio.asr import VocabularyService, VocabularyServiceException

    svc = VocabularyService()
    out: dict = {}
    vid = svc.create_vocabulary(target_model=target_model, prefix="sdktest",
                                vocabulary=[{"text": "Moonshine", "weight": 4, "lang": "en"}])
    out["created"] = vid
    out["listed"] = [v["vocabulary_id"] for v in svc.list_vocabularies(prefix="sdktest")]
    out["queried"] = svc.query_vocabulary(vid)
    svc.update_vocabulary(vid, [{"text": "LibriVox", "weight": 5, "lang": "en"}])
    out["after_update"] = svc.query_vocabulary(vid)["vocabulary"]
    try:
        svc.create_vocabulary(target_model=target_model, prefix="BAD PREFIX",
                              vocabulary=[{"text": "x", "weight": 4}])
        out["bad_prefix"] = None
    except VocabularyServiceException as exc:
        out["bad_prefix"] = str(exc)
    svc.delete_vocabulary(vid)
    out["after_delete"] = [v["vocabulary_id"] for v in svc.list_vocabularies(prefix="sdktest")]
    return out


def everything(path: str, model: str) -> dict:
    """All checks in one process (importing the SDK takes a second or two)."""
    from dashscope.audio.asr import VocabularyService

    out = {"vocabulary": vocabulary(model), "call": recognition_call(path, model),
           "stream": recognition_stream(path, model, None)}
    vid = VocabularyService().create_vocabulary(target_model=model, prefix="hot",
                                                vocabulary=[{"text": "Sentance", "weight": 5}])
    out["stream_hotwords"] = recognition_stream(path, model, vid)
    return out


def main() -> int:
    mode = sys.argv[1]
    if mode == "call":
        out = recognition_call(sys.argv[2], sys.argv[3])
    elif mode == "stream":
        out = recognition_stream(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    elif mode == "all":
        out = everything(sys.argv[2], sys.argv[3])
    elif mode == "vocabulary":
        out = vocabulary(sys.argv[2])
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
