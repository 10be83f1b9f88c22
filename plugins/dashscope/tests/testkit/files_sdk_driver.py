"""Drives the official ``dashscope`` SDK's file transcription, unchanged, against the environment's host.

Run by ``sdk/test_files_sdk.py`` and ``sdk/test_files_sdk_sync.py`` in a subprocess (the SDK reads
``DASHSCOPE_HTTP_BASE_URL`` at import)::

    python testkit/files_sdk_driver.py fun URL        # Transcription.async_call + wait (diarization on)
    python testkit/files_sdk_driver.py qwen URL       # QwenTranscription.async_call + wait (words on)
    python testkit/files_sdk_driver.py mmc URL        # MultiModalConversation.call, qwen3-asr-flash (sync)

Prints one JSON object: the final task output and the fetched result file.
"""

from __future__ import annotations

import json
import sys
import urllib.request


def _fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read().decode("utf-8"))


def fun(url: str) -> dict:
    from dashscope.audio.asr import Transcription

    task = Transcription.async_call(model="fun-asr", file_urls=[url], diarization_enabled=True, speaker_count=2,
                                    language_hints=["en"])
    done = Transcription.wait(task=task.output.task_id)
    out = {"submit_status": task.output.task_status, "status_code": done.status_code,
           "task_status": done.output.task_status, "results": done.output.results, "usage": done.usage}
    out["file"] = _fetch(done.output.results[0]["transcription_url"])
    return out


def qwen(url: str) -> dict:
    from dashscope.audio.qwen_asr import QwenTranscription

    task = QwenTranscription.async_call(model="qwen3-asr-flash-filetrans", file_url=url, enable_words=True,
                                        language="en")
    done = QwenTranscription.wait(task=task.output.task_id)
    out = {"submit_status": task.output.task_status, "status_code": done.status_code,
           "task_status": done.output.task_status, "result": done.output.get("result"), "usage": done.usage}
    out["file"] = _fetch(done.output["result"]["transcription_url"])
    return out


def mmc(url: str) -> dict:
    from dashscope import MultiModalConversation

    messages = [{"role": "system", "content": [{"text": ""}]}, {"role": "user", "content": [{"audio": url}]}]
    resp = MultiModalConversation.call(model="qwen3-asr-flash", messages=messages, result_format="message",
                                       asr_options={"language": "en", "enable_itn": False})
    return {"status_code": resp.status_code, "output": resp.output, "usage": resp.usage}


def main() -> int:
    mode, url = sys.argv[1], sys.argv[2]
    out = {"fun": fun, "qwen": qwen, "mmc": mmc}[mode](url)
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
