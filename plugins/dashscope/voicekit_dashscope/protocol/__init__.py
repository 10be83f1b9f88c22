"""Sans-IO wire protocols of the DashScope services (no sockets, no clocks).

One module per service, each importable without trio, httpx or PyAV (a test checks this); the
trio/httpx clients and the emulator are thin I/O shells around them:

* :mod:`.task` — the WebSocket task protocol of Fun-ASR and Paraformer (``run-task`` …);
* :mod:`.realtime` — the realtime event protocol of Qwen3-ASR and the Omni models, a package with
  one concern per module (model table, session config and its checks, events, codec, the phase
  table, the client and server state machines);
* :mod:`.files` — asynchronous file transcription (submit, poll, result files);
* :mod:`.compat` — OpenAI-compatible chat completions and the native multimodal call;
* :mod:`.vocabulary` — the vocabulary (hotword) API;
* :mod:`._util` — what they share: the one ``ProtocolError``, the one ``Violation`` (a refusal a
  server sends back) and the JSON field readers.
"""
