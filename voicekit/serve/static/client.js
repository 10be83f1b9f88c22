// voicekit browser client: microphone -> WebSocket -> assistant; transcripts, replies and reply
// audio back. The message protocol is described in docs/browser.md.
"use strict";

(() => {
  const TARGET_RATE = 16000;
  const CHUNK_MS = 20;
  const MAX_BUFFERED = 1 << 20; // stop sending microphone audio while this much is unsent
  // Closes after which the page reconnects by itself, to the same URL (behind a load balancer
  // that reaches another server): 1012 the server restarts (drain), 1013 it is busy or the
  // conversation fell behind, 1006 the connection broke or the upgrade was refused (HTTP 503).
  const RECONNECT_CODES = new Set([1006, 1012, 1013]);
  const MAX_RECONNECTS = 5; // in a row, without a conversation that got ready in between

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));

  // Everything that happened, for people debugging in the console (and for automated tests).
  const state = {
    status: "idle", ready: null, transcripts: [], partial: "", replies: [], events: [], errors: [],
    audioChunksIn: 0, audioBytesIn: 0, chunksSent: 0, chunksDropped: 0, interruptions: 0, close: null,
    reconnects: 0, sessions: [],
  };
  window.voicekit = state;

  let ctx = null;
  let ws = null;
  let mic = null;
  let capture = null;
  let sourceNode = null;
  let workletLoaded = false;
  let replyFormat = null;
  let playAt = 0;
  let retries = 0; // reconnects since the last conversation that got ready
  let retryTimer = null;
  const playing = new Set();
  const replyItems = new Map(); // turn_id -> <li>

  function setStatus(text, kind) {
    state.status = kind || text;
    $("status").textContent = text;
  }

  function addLine(cls, who, text) {
    const li = document.createElement("li");
    li.className = cls;
    const w = document.createElement("span");
    w.className = "who";
    w.textContent = who;
    const t = document.createElement("span");
    t.className = "text";
    t.textContent = text;
    li.append(w, t);
    $("log").append(li);
    li.scrollIntoView({ block: "nearest" });
    return li;
  }

  function showError(message) {
    state.errors.push(message);
    addLine("error", "Error:", message);
  }

  // -- reply audio ---------------------------------------------------------------------------

  function playChunk(buffer) {
    if (!ctx || !replyFormat) return;
    const pcm = new Int16Array(buffer);
    if (pcm.length === 0) return;
    const audio = ctx.createBuffer(1, pcm.length, replyFormat.sample_rate);
    const ch = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const node = ctx.createBufferSource();
    node.buffer = audio;
    node.connect(ctx.destination);
    const now = ctx.currentTime;
    if (playAt < now + 0.02) playAt = now + 0.08; // (re)start with a small jitter buffer
    node.start(playAt);
    playAt += audio.duration;
    playing.add(node);
    node.onended = () => playing.delete(node);
  }

  function stopPlayback() {
    for (const node of playing) {
      try { node.stop(); } catch (e) { /* already stopped */ }
    }
    playing.clear();
    playAt = 0;
  }

  // -- messages from the server --------------------------------------------------------------

  function onEvent(e) {
    state.events.push(e.event);
    switch (e.event) {
      case "transcript":
        if (e.is_final) {
          state.partial = "";
          $("partial").textContent = "";
          if (e.text.trim()) {
            state.transcripts.push(e.text);
            addLine("user", "You:", e.text);
          }
        } else {
          state.partial = e.text;
          $("partial").textContent = e.text;
        }
        break;
      case "reply_text": {
        let li = replyItems.get(e.turn_id);
        if (!li) {
          li = addLine("assistant", "Assistant:", "");
          replyItems.set(e.turn_id, li);
          state.replies.push("");
        }
        const t = li.querySelector(".text");
        t.textContent = (t.textContent + " " + e.text).trim();
        state.replies[state.replies.length - 1] = t.textContent;
        break;
      }
      case "reply_interrupted": {
        stopPlayback();
        state.interruptions += 1;
        const li = replyItems.get(e.turn_id);
        if (li) li.classList.add("interrupted");
        break;
      }
      case "error":
        showError(`${e.where}: ${e.message}`);
        break;
      case "session_ended":
        setStatus(`Session ended (${e.reason}).`, "ended");
        break;
      default:
        break;
    }
  }

  function onMessage(msg) {
    if (typeof msg.data !== "string") {
      state.audioChunksIn += 1;
      state.audioBytesIn += msg.data.byteLength;
      playChunk(msg.data);
      return;
    }
    const m = JSON.parse(msg.data);
    if (m.type === "ready") {
      state.ready = m;
      state.sessions.push(m.session_id);
      retries = 0;
      $("assistant").textContent = m.assistant ? `· ${m.assistant}` : "";
      setStatus("Listening… speak now.", "listening");
    } else if (m.type === "audio_format") {
      replyFormat = m;
    } else if (m.type === "event") {
      onEvent(m.event);
    } else if (m.type === "error") {
      showError(m.message);
      if (m.code === "unauthorized") $("token-row").style.display = "inline";
    }
  }

  // -- microphone ----------------------------------------------------------------------------

  function send(buffer) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !state.ready) return;
    if (ws.bufferedAmount > MAX_BUFFERED) {
      state.chunksDropped += 1;
      return;
    }
    ws.send(buffer);
    state.chunksSent += 1;
  }

  async function startCapture() {
    sourceNode = ctx.createMediaStreamSource(mic);
    const mute = ctx.createGain();
    mute.gain.value = 0;
    mute.connect(ctx.destination);
    if (ctx.audioWorklet && typeof AudioWorkletNode !== "undefined") {
      if (!workletLoaded) {
        await ctx.audioWorklet.addModule("downsampler.js");
        await ctx.audioWorklet.addModule("capture-worklet.js");
        workletLoaded = true;
      }
      capture = new AudioWorkletNode(ctx, "voicekit-capture", {
        numberOfInputs: 1, numberOfOutputs: 1, channelCount: 1, channelCountMode: "explicit",
        processorOptions: { targetRate: TARGET_RATE, chunkMs: CHUNK_MS },
      });
      capture.port.onmessage = (e) => send(e.data);
    } else {
      // older browsers: ScriptProcessor on the main thread, same conversion
      const down = new globalThis.VoicekitDownsampler(ctx.sampleRate, TARGET_RATE, CHUNK_MS);
      capture = ctx.createScriptProcessor(2048, 1, 1);
      capture.onaudioprocess = (e) => {
        for (const chunk of down.push(e.inputBuffer.getChannelData(0))) send(chunk);
      };
    }
    sourceNode.connect(capture);
    capture.connect(mute); // keeps the node pulled by the audio graph; outputs silence
  }

  function stopCapture() {
    if (capture) {
      if (capture.port) capture.port.postMessage("stop");
      capture.disconnect();
      capture = null;
    }
    if (sourceNode) { sourceNode.disconnect(); sourceNode = null; }
    if (mic) { for (const track of mic.getTracks()) track.stop(); mic = null; }
  }

  // -- start / stop --------------------------------------------------------------------------

  async function start() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The microphone needs a secure context: open this page as http://localhost:PORT/ " +
                "(or 127.0.0.1) on this machine, or over HTTPS (a TLS reverse proxy or a tunnel).");
      return;
    }
    $("start").disabled = true;
    setStatus("Starting…", "starting");
    try {
      if (!ctx) ctx = new AudioContext(); // one per page: reused by every conversation
      await ctx.resume();
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: params.get("aec") !== "0", noiseSuppression: true,
                 autoGainControl: true },
      });
      await startCapture();
    } catch (err) {
      stopCapture();
      showError(`Cannot use the microphone: ${err.name || ""} ${err.message || err}`);
      setStatus("Stopped.", "failed");
      $("start").disabled = false;
      return;
    }
    retries = 0;
    connect();
    setButton(true);
    $("start").disabled = false;
  }

  // Retry after a refusal or a restart: the delay doubles (0.5, 1, 2, 4, 8 s), with jitter so that
  // the clients of a drained server do not all come back at the same moment.
  function reconnectDelay(n) {
    return 500 * 2 ** (n - 1) * (0.75 + Math.random() * 0.5);
  }

  function connect() {
    state.ready = null;
    replyItems.clear();
    const sock = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`);
    ws = sock;
    sock.binaryType = "arraybuffer";
    sock.onopen = () => {
      const hello = { type: "hello", version: 1, sample_rate: TARGET_RATE, channels: 1, format: "pcm_s16le",
                      client: navigator.userAgent.slice(0, 100) };
      const token = $("token").value || fragment.get("token");
      if (token) hello.token = token;
      sock.send(JSON.stringify(hello));
      setStatus("Connecting…", "connecting");
    };
    sock.onmessage = onMessage;
    sock.onclose = (e) => {
      state.close = { code: e.code, reason: e.reason };
      if (ws !== sock) return; // an earlier conversation that was finishing
      ws = null;
      if (mic && RECONNECT_CODES.has(e.code) && retries < MAX_RECONNECTS) {
        // the microphone keeps running; audio captured meanwhile is not sent (no conversation)
        retries += 1;
        state.reconnects += 1;
        const delay = reconnectDelay(retries);
        setStatus(`Reconnecting in ${(delay / 1000).toFixed(1)} s (${e.code}${e.reason ? ": " + e.reason : ""})…`,
                  "reconnecting");
        retryTimer = setTimeout(() => { retryTimer = null; if (mic) connect(); }, delay);
        return;
      }
      stopCapture();
      if (state.status !== "ended") setStatus(`Disconnected (${e.code}${e.reason ? ": " + e.reason : ""}).`, "closed");
      setButton(false);
      $("start").disabled = false;
    };
  }

  function stop() {
    // the microphone stops now; the reply being spoken finishes, then the server closes
    if (retryTimer !== null) { clearTimeout(retryTimer); retryTimer = null; }
    stopCapture();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "end" }));
      setStatus("Finishing…", "finishing");
    } else if (!ws) {
      setStatus("Stopped.", "closed"); // it was waiting to reconnect
    }
    setButton(false);
  }

  function setButton(on) {
    const b = $("start");
    b.textContent = on ? "Stop" : "Start";
    b.classList.toggle("on", on);
  }

  $("start").addEventListener("click", () => (mic ? stop() : start()));
  if (fragment.get("token")) $("token").value = fragment.get("token");
  if (params.get("token-field") === "1") $("token-row").style.display = "inline";
  if (params.get("autostart") === "1") start();
})();
