/*
 * Brook's chat widget (docs/widget.md). One script tag, no build step:
 *
 *   <script src="https://BROOK/static/brook/widget.js" data-tenant="PUBLIC_KEY" async></script>
 *
 * It fetches the tenant's config, creates or restores the visitor's session (kept in localStorage), loads the
 * history with its thought steps, and receives each reply the way the server decided for this visitor: Server-Sent
 * Events, else long polling, else one batch answer. A transport that fails hands over to the next one, resuming
 * from the last event it got, and the fallback is reported to Brook. Everything model- or user-written is put in
 * the page as text (textContent, createTextNode): nothing in a message can run script. DOM updates are batched
 * per animation frame.
 */
(function () {
  "use strict";

  const script = document.currentScript;
  if (!script || !script.dataset.tenant) {
    console.error("Brook widget: the script tag needs data-tenant=\"<public key>\".");
    return;
  }
  const TENANT = script.dataset.tenant;
  const BASE = new URL(script.src, location.href).origin;
  const STORE = "brook:" + TENANT + ":";
  const SSE_TYPES = [
    "message.started", "status", "step.started", "step.completed", "reasoning.delta", "text.delta",
    "tool.call", "tool.result", "message.completed", "message.cancelled", "message.failed",
  ];
  const TERMINAL = new Set(["message.completed", "message.cancelled", "message.failed"]);
  const STREAM_QUIET_MS = 40000; // no event for this long while a reply runs: the stream is treated as stalled
  const STREAM_TOKEN_REFRESH_MS = 4 * 60 * 1000; // stream tokens live 5 minutes

  // --- Small helpers ------------------------------------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  function store(name, value) {
    try {
      if (value === undefined) return JSON.parse(localStorage.getItem(STORE + name) || "null");
      if (value === null) localStorage.removeItem(STORE + name);
      else localStorage.setItem(STORE + name, JSON.stringify(value));
    } catch (error) {
      return null; // storage blocked (private mode, sandboxed iframe): the widget still works for this page view
    }
    return value;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "v-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
  }

  function clock(iso) {
    const date = iso ? new Date(iso) : new Date();
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function seconds(ms) {
    return (ms / 1000).toFixed(1) + " s";
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || "Brook answered " + status + ".");
      this.status = status;
      this.code = (body && body.code) || "HTTP_" + status;
      this.retryAfter = null;
    }
  }

  // --- The API ------------------------------------------------------------------------------------------------------

  const api = {
    session: null, // {id, token, delivery, streamToken, streamTokenAt}

    async call(method, url, body) {
      const headers = {};
      if (body !== undefined) headers["Content-Type"] = "application/json";
      if (this.session) headers.Authorization = "Bearer " + this.session.token;
      let response;
      try {
        response = await fetch(url, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) });
      } catch (error) {
        throw Object.assign(new ApiError(0, { code: "NETWORK", message: "Brook could not be reached." }), { cause: error });
      }
      const text = await response.text();
      let data = null;
      try {
        data = text ? JSON.parse(text) : null;
      } catch (error) {
        data = null; // not Brook's JSON (a proxy's error page): reported by status below
      }
      if (!response.ok) {
        const error = new ApiError(response.status, data);
        error.retryAfter = Number(response.headers.get("Retry-After")) || null;
        throw error;
      }
      return data;
    },

    async streamToken() {
      const session = this.session;
      if (!session.streamToken || Date.now() - session.streamTokenAt > STREAM_TOKEN_REFRESH_MS) {
        const fresh = await this.call("POST", BASE + "/api/v1/sessions/" + session.id + "/stream-token", {});
        session.streamToken = fresh.token;
        session.streamTokenAt = Date.now();
      }
      return session.streamToken;
    },

    reportFallback(reason, from, to, messageId, detail) {
      const body = { reason: reason, from_delivery: from, to_delivery: to, detail: (detail || "").slice(0, 500) };
      if (messageId) body.message_id = messageId;
      ui.fallbacks.push(body);
      return this.call("POST", BASE + "/api/v1/sessions/" + this.session.id + "/fallback", body).catch(function () {});
    },
  };

  // --- One assistant reply on screen ---------------------------------------------------------------------------------

  class Reply {
    constructor(id) {
      this.id = id;
      this.lastSeq = 0;
      this.steps = new Map(); // index → {data, node}
      this.content = "";
      this.reasoning = "";
      this.finished = false;
      this.startedAt = performance.now();
      this.pendingText = "";
      this.pendingReasoning = "";
      this.dirty = false;
      this.build();
    }

    build() {
      this.stepList = el("ol", { class: "steps", "aria-label": "Thought steps" });
      this.reasoningText = document.createTextNode("");
      this.reasoningLabel = el("span", { text: "Model reasoning" });
      this.reasoningBox = el("details", { class: "reasoning", hidden: "" }, [
        el("summary", {}, [this.reasoningLabel]),
        el("div", { class: "reasoning-text" }, [this.reasoningText]),
      ]);
      this.answerText = document.createTextNode("");
      this.answer = el("div", { class: "answer" }, [this.answerText]);
      this.stats = el("div", { class: "stats", "aria-hidden": "true" });
      this.error = el("div", { class: "error", role: "alert", hidden: "" });
      this.actions = el("div", { class: "actions" }, [
        el("button", { type: "button", class: "copy", text: "Copy", onclick: () => this.copy() }),
        el("button", { type: "button", class: "export", text: "Export JSON", onclick: () => this.export() }),
      ]);
      this.node = el("li", { class: "message assistant", "data-message-id": this.id || "" }, [
        this.stepList, this.reasoningBox, this.answer, this.error, this.stats, this.actions,
      ]);
    }

    streaming(on) {
      this.node.classList.toggle("streaming", on);
      this.reasoningLabel.textContent = on && !this.finished && this.reasoning && !this.content
        ? "Model reasoning (streaming…)"
        : "Model reasoning";
    }

    // Events from any transport; each seq is applied once, in order.
    apply(event) {
      if (event.seq <= this.lastSeq) return;
      this.lastSeq = event.seq;
      const data = event.data || {};
      switch (event.type) {
        case "step.started":
          this.addStep(data);
          break;
        case "step.completed": {
          const step = this.steps.get(data.index);
          if (step) this.updateStep(step, data);
          break;
        }
        case "reasoning.delta":
          this.pendingReasoning += data.delta;
          this.reasoning += data.delta;
          break;
        case "text.delta":
          if (!this.firstTokenAt) this.firstTokenAt = performance.now();
          this.pendingText += data.delta;
          this.content += data.delta;
          break;
        case "tool.call": {
          const step = this.steps.get(data.step);
          if (step) this.showTool(step, "Arguments", data.arguments);
          break;
        }
        case "tool.result": {
          const step = this.steps.get(data.step);
          if (step) this.showTool(step, data.is_error ? "Error" : "Result", data.result);
          break;
        }
        case "message.completed":
        case "message.cancelled":
        case "message.failed":
          this.finish(event.type, data);
          break;
      }
      this.dirty = true;
      ui.replies.add(this);
      ui.schedule();
    }

    addStep(data) {
      const status = el("span", { class: "status", text: data.status || "running" });
      const duration = el("span", { class: "duration" });
      const detail = el("div", { class: "detail", text: data.detail || "" });
      const node = el("li", { class: "step", "data-kind": data.kind, "data-status": data.status || "running" }, [
        el("span", { class: "kind", text: data.kind.replace("_", " ") }),
        el("span", { class: "title", text: data.title }),
        el("time", { class: "time", datetime: data.started_at || "", text: clock(data.started_at) }),
        duration,
        status,
        detail,
      ]);
      const step = { data: Object.assign({}, data), node: node, status: status, duration: duration, detail: detail };
      this.steps.set(data.index, step);
      this.stepList.append(node);
      if (data.metadata && data.metadata.arguments !== undefined) this.showTool(step, "Arguments", data.metadata.arguments);
      if (data.metadata && data.metadata.result !== undefined) this.showTool(step, "Result", data.metadata.result);
    }

    updateStep(step, data) {
      Object.assign(step.data, data, { metadata: Object.assign({}, step.data.metadata, data.metadata) });
      step.node.dataset.status = data.status;
      step.status.textContent = data.status;
      if (data.duration_ms != null) step.duration.textContent = seconds(data.duration_ms);
      if (data.detail != null) step.detail.textContent = data.detail;
    }

    showTool(step, label, value) {
      const key = "tool" + label;
      if (step[key]) return;
      step[key] = el("details", { class: "tool" }, [
        el("summary", { text: label }),
        el("pre", { text: JSON.stringify(value, null, 2) }),
      ]);
      step.node.append(step[key]);
    }

    finish(type, data) {
      this.finished = true;
      this.outcome = type;
      if (typeof data.content === "string" && data.content !== this.content) {
        // The deltas are the record; a mismatch here would be a bug worth seeing in the console.
        console.warn("Brook widget: streamed text differs from the stored reply; showing the stored one.");
        this.answerText.data = "";
        this.pendingText = data.content;
        this.content = data.content;
      }
      if (data.usage) this.usage = data.usage;
      if (data.duration_ms != null) this.durationMs = data.duration_ms;
      if (type === "message.failed") this.showError(data.message || "The assistant could not finish this reply.");
      if (type === "message.cancelled") this.node.classList.add("cancelled");
      ui.announce(type === "message.completed" ? "The answer is complete." : type === "message.cancelled" ? "Stopped." : "The reply failed.");
    }

    showError(text) {
      this.error.hidden = false;
      this.error.textContent = text;
      this.node.classList.add("failed");
    }

    // Called once per animation frame when something changed.
    render(now) {
      if (this.pendingText) {
        this.answerText.appendData(this.pendingText);
        this.pendingText = "";
        if (!this.foldedReasoning) {
          this.foldedReasoning = true; // the answer has begun: fold the reasoning away (one click brings it back)
          this.reasoningBox.open = false;
        }
      }
      if (this.pendingReasoning) {
        this.reasoningText.appendData(this.pendingReasoning);
        this.pendingReasoning = "";
        if (this.reasoningBox.hidden) {
          this.reasoningBox.hidden = false;
          this.reasoningBox.open = !this.finished;
        }
      }
      this.streaming(!this.finished);
      const tokens = this.usage && this.usage.completion_tokens != null
        ? this.usage.completion_tokens
        : Math.round((this.content.length + this.reasoning.length) / 4);
      const elapsed = this.durationMs != null ? this.durationMs : now - this.startedAt;
      const rate = elapsed > 0 ? Math.round(tokens / (elapsed / 1000)) : 0;
      this.stats.textContent = (this.usage ? "" : "≈") + tokens + " tokens · " + seconds(elapsed) + " · " + rate + " tokens/s";
      this.dirty = !this.finished; // the clock keeps ticking while it runs
    }

    // A finished message from the history.
    static fromHistory(message) {
      const reply = new Reply(message.id);
      for (const step of message.steps || []) reply.addStep(step);
      reply.reasoning = message.reasoning || "";
      reply.pendingReasoning = reply.reasoning;
      reply.content = message.content || "";
      reply.pendingText = reply.content;
      reply.finished = !["queued", "running"].includes(message.status);
      reply.usage = message.usage;
      reply.durationMs = message.duration_ms;
      if (message.error) reply.showError(message.error.message);
      if (message.status === "cancelled") reply.node.classList.add("cancelled");
      reply.dirty = true;
      return reply;
    }

    copy() {
      if (navigator.clipboard) navigator.clipboard.writeText(this.content).catch(function () {});
    }

    export() {
      const steps = Array.from(this.steps.values(), (step) => step.data);
      const body = { message_id: this.id, content: this.content, reasoning: this.reasoning, steps: steps };
      const url = URL.createObjectURL(new Blob([JSON.stringify(body, null, 2)], { type: "application/json" }));
      const link = el("a", { href: url, download: "brook-message-" + this.id + ".json" });
      ui.root.append(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    }
  }

  // --- Receiving a reply: SSE, long polling, batch -------------------------------------------------------------------

  const transports = {
    // Server-Sent Events; resolves when the reply has ended, rejects with {reason, detail} to fall back.
    stream(reply) {
      return new Promise(async function (resolve, reject) {
        let source = null;
        let failures = 0;
        let opened = false;
        let quiet = null;
        const done = function (error) {
          clearTimeout(quiet);
          if (source) source.close();
          source = null;
          if (error) reject(error); else resolve();
        };
        const watch = function () {
          clearTimeout(quiet);
          quiet = setTimeout(function () { done({ reason: "timeout", detail: "no event for 40 s" }); }, STREAM_QUIET_MS);
        };
        const open = async function () {
          let token;
          try {
            token = await api.streamToken();
          } catch (error) {
            return done({ reason: error.status === 403 ? "not_authorized" : "connection_failed", detail: error.message });
          }
          const url = new URL(BASE + "/api/v1/messages/" + reply.id + "/stream");
          url.searchParams.set("token", token);
          if (reply.lastSeq) url.searchParams.set("last_event_id", String(reply.lastSeq));
          source = new EventSource(url.toString());
          watch();
          source.onopen = function () { opened = true; };
          const onEvent = function (message) {
            failures = 0;
            watch();
            const data = JSON.parse(message.data);
            reply.apply({ seq: Number(message.lastEventId), type: message.type, data: data });
            if (TERMINAL.has(message.type)) done();
          };
          for (const type of SSE_TYPES) source.addEventListener(type, onEvent);
          source.onerror = function () {
            if (reply.finished) return done();
            failures += 1;
            // EventSource reconnects by itself (sending Last-Event-ID); it gives up on an HTTP error. Reopen with a
            // fresh token and our own cursor then, a few times, before falling back. A stream that never opened
            // at all (blocked by a proxy or an extension) is given up sooner.
            if (failures >= (opened ? 4 : 2)) {
              return done({ reason: "connection_failed", detail: opened ? "the stream kept dropping" : "the stream never opened" });
            }
            if (source.readyState === EventSource.CLOSED) {
              source.close();
              api.session.streamToken = null;
              setTimeout(open, 300 * failures);
            }
          };
        };
        await open();
      });
    },

    // Long polling from the reply's last seq; resolves when done.
    async poll(reply) {
      let failures = 0;
      while (!reply.finished) {
        let body;
        try {
          body = await api.call("GET", BASE + "/api/v1/messages/" + reply.id + "?after=" + reply.lastSeq + "&wait=20");
          failures = 0;
        } catch (error) {
          failures += 1;
          if (error.status && error.status < 500 && error.status !== 429) throw error;
          ui.status("Connection trouble; trying again…");
          await new Promise(function (wake) { setTimeout(wake, Math.min(8000, 500 * 2 ** failures)); });
          continue;
        }
        ui.status("");
        for (const event of body.events) reply.apply(event);
        if (body.done && !reply.finished) {
          // The log was compacted (or the terminal event was hidden): finish from the message itself.
          reply.finish("message." + (body.status === "completed" ? "completed" : body.status === "cancelled" ? "cancelled" : "failed"), body);
        }
        if (!body.done && !body.events.length && body.poll_after_ms) {
          await new Promise(function (wake) { setTimeout(wake, body.poll_after_ms); });
        }
      }
    },
  };

  // --- The panel -----------------------------------------------------------------------------------------------------

  const ui = {
    current: null,
    fallbacks: [],
    frame: null,
    replies: new Set(),

    build(config) {
      const host = el("div", { id: "brook-widget" });
      document.body.append(host);
      this.root = host.attachShadow({ mode: "open" });
      this.root.append(el("link", { rel: "stylesheet", href: BASE + "/static/brook/widget.css" }));
      this.launcher = el("button", {
        type: "button", class: "launcher", "aria-expanded": "false", "aria-controls": "brook-panel",
        text: "Chat", onclick: () => this.toggle(),
      });
      this.list = el("ol", { class: "messages", role: "log", "aria-label": "Conversation" });
      this.list.addEventListener("scroll", () => {
        this.stick = this.list.scrollTop + this.list.clientHeight >= this.list.scrollHeight - 40;
      }, { passive: true });
      this.stick = true;
      this.input = el("textarea", { rows: "2", "aria-label": "Your message", placeholder: "Ask something…", maxlength: String(config.limits.max_message_length) });
      this.input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          this.send();
        }
      });
      this.sendButton = el("button", { type: "submit", class: "send", text: "Send" });
      this.stopButton = el("button", { type: "button", class: "stop", text: "Stop", disabled: "", onclick: () => this.stop() });
      this.statusLine = el("p", { class: "status-line", role: "status" });
      this.live = el("div", { class: "visually-hidden", "aria-live": "polite" });
      const toggle = (name, label) => {
        const box = el("input", { type: "checkbox", checked: "", "data-toggle": name });
        box.addEventListener("change", () => this.panel.classList.toggle("hide-" + name, !box.checked));
        return el("label", { class: "toggle" }, [box, label]);
      };
      this.panel = el("section", { id: "brook-panel", class: "panel", hidden: "", "aria-label": config.tenant.name + " assistant" }, [
        el("header", {}, [
          el("h2", { text: config.tenant.name }),
          toggle("steps", "Steps"),
          toggle("reasoning", "Reasoning"),
          el("button", { type: "button", class: "close", "aria-label": "Close", text: "×", onclick: () => this.toggle(false) }),
        ]),
        this.list,
        this.statusLine,
        el("form", { class: "composer", onsubmit: (event) => { event.preventDefault(); this.send(); } }, [
          this.input, this.sendButton, this.stopButton,
        ]),
        this.live,
      ]);
      this.panel.addEventListener("keydown", (event) => {
        if (event.key === "Escape" && this.current && !this.current.finished) {
          event.preventDefault();
          this.stop();
        }
      });
      this.root.append(this.launcher, this.panel);
      if (script.dataset.open === "true") this.toggle(true);
    },

    toggle(open) {
      const show = open === undefined ? this.panel.hidden : open;
      this.panel.hidden = !show;
      this.launcher.setAttribute("aria-expanded", String(show));
      if (show) this.input.focus();
    },

    status(text, alert) {
      this.statusLine.textContent = text;
      this.statusLine.setAttribute("role", alert ? "alert" : "status");
    },

    announce(text) {
      this.live.textContent = text;
    },

    addUser(text) {
      this.list.append(el("li", { class: "message user", text: text }));
      this.scroll(true);
    },

    addReply(reply) {
      this.replies.add(reply);
      this.list.append(reply.node);
      this.schedule();
    },

    schedule() {
      if (this.frame === null) this.frame = requestAnimationFrame((now) => this.flush(now));
    },

    flush(now) {
      this.frame = null;
      let again = false;
      for (const reply of this.replies) {
        if (!reply.dirty) continue;
        reply.render(now);
        if (reply.dirty) again = true;
        else this.replies.delete(reply);
      }
      this.scroll(false);
      if (again) this.schedule();
    },

    scroll(force) {
      if (force) this.stick = true;
      if (this.stick) this.list.scrollTop = this.list.scrollHeight;
    },

    busy(on) {
      this.sendButton.disabled = on;
      this.stopButton.disabled = !on;
    },

    async send() {
      const content = this.input.value;
      if (!content.trim() || (this.current && !this.current.finished)) return;
      this.input.value = "";
      this.addUser(content);
      this.busy(true);
      this.status("");
      this.announce("The assistant is answering.");
      try {
        await deliver(content);
        this.status("");
      } catch (error) {
        this.status(error.message + (error.retryAfter ? " Try again in " + error.retryAfter + " s." : ""), true);
        if (this.current && !this.current.finished) {
          this.current.showError(error.message);
          this.current.finished = true; // nothing more will come for it; the visitor may send again
          this.current.dirty = true;
          this.replies.add(this.current);
        }
      } finally {
        this.busy(false);
        this.schedule();
      }
    },

    async stop() {
      const reply = this.current;
      if (!reply || reply.finished || !reply.id) return;
      this.status("Stopping…");
      try {
        await api.call("POST", BASE + "/api/v1/messages/" + reply.id + "/cancel");
      } catch (error) {
        this.status(error.message, true);
      }
    },
  };

  // --- Sending a message and following its reply --------------------------------------------------------------------

  async function deliver(content) {
    const messages = BASE + "/api/v1/sessions/" + api.session.id + "/messages";
    const body = { content: content, client_message_id: uuid() };
    let delivery = api.session.delivery;
    if (delivery === "stream" && typeof EventSource === "undefined") {
      api.reportFallback("unsupported", "stream", "poll", null, "no EventSource in this browser");
      delivery = "poll";
    }
    if (delivery === "batch") {
      const reply = new Reply(null);
      ui.current = reply;
      ui.addReply(reply);
      const answer = await api.call("POST", messages, Object.assign(body, { mode: "batch" }));
      reply.id = answer.id;
      reply.node.dataset.messageId = answer.id;
      const finished = Reply.fromHistory(answer);
      reply.node.replaceWith(finished.node);
      ui.replies.delete(reply);
      ui.current = finished;
      ui.addReply(finished);
      ui.announce("The answer is complete.");
      return;
    }
    const accepted = await api.call("POST", messages, Object.assign(body, { mode: "poll" }));
    const reply = new Reply(accepted.id);
    ui.current = reply;
    ui.addReply(reply);
    if (delivery === "stream") {
      try {
        await transports.stream(reply);
        return;
      } catch (failure) {
        api.reportFallback(failure.reason, "stream", "poll", reply.id, failure.detail);
        ui.status("Live streaming is unavailable; following the reply by polling.");
      }
    }
    await transports.poll(reply);
    ui.status("");
  }

  // --- Start-up ------------------------------------------------------------------------------------------------------

  async function startSession() {
    const saved = store("session");
    if (saved) {
      api.session = saved;
      try {
        const history = await api.call("GET", BASE + "/api/v1/sessions/" + saved.id);
        return history.messages;
      } catch (error) {
        if (error.status !== 401 && error.status !== 404) throw error;
        store("session", null); // expired or gone: start afresh
      }
    }
    api.session = null;
    let visitor = store("visitor");
    if (!visitor) visitor = store("visitor", uuid());
    const created = await api.call("POST", BASE + "/api/v1/sessions", { tenant: TENANT, visitor_id: visitor });
    api.session = {
      id: created.id,
      token: created.token,
      delivery: created.delivery,
      streamToken: created.stream_token.token,
      streamTokenAt: Date.now(),
    };
    store("session", { id: created.id, token: created.token, delivery: created.delivery });
    return [];
  }

  async function start() {
    const config = await api.call("GET", BASE + "/api/v1/widget/config?tenant=" + encodeURIComponent(TENANT));
    ui.build(config);
    let history;
    try {
      history = await startSession();
    } catch (error) {
      ui.status("The assistant is unavailable: " + error.message, true);
      return;
    }
    for (const message of history) {
      if (message.role === "user") {
        ui.addUser(message.content);
      } else if (["queued", "running"].includes(message.status)) {
        // A reply still under way when the page was reloaded: replay its log from the start, then follow it.
        const reply = new Reply(message.id);
        ui.current = reply;
        ui.addReply(reply);
        ui.busy(true);
        transports.poll(reply).catch(function (error) { reply.showError(error.message); }).finally(function () { ui.busy(false); });
      } else {
        ui.addReply(Reply.fromHistory(message));
      }
    }
    window.BrookWidget = { fallbacks: ui.fallbacks, session: function () { return api.session && api.session.id; } };
  }

  start().catch(function (error) {
    console.error("Brook widget could not start:", error);
  });
})();
