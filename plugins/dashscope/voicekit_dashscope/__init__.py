"""voicekit plugins for Alibaba Cloud Model Studio (DashScope) speech recognition.

* :mod:`voicekit_dashscope.protocol.task` — the WebSocket task protocol, sans I/O;
* :mod:`voicekit_dashscope.client` — the trio client with retries;
* :mod:`voicekit_dashscope.asr` — the ASR plugins (Fun-ASR and Paraformer real-time);
* :mod:`voicekit_dashscope.vocabulary` — the hotword (vocabulary) API;
* the local emulator of these services is the separate distribution ``voicekit-dashscope-emulator``
  (:mod:`voicekit_dashscope_emulator`).
"""

from voicekit_dashscope.auth import ApiKey, resolve_api_key
from voicekit_dashscope.regions import Endpoints, get_region

__all__ = ["ApiKey", "Endpoints", "get_region", "resolve_api_key"]
