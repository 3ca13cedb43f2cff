// Brook's demo page: a minimal client of the batch API (the embeddable widget replaces it).
// Every piece of text is inserted with textContent, so nothing in a message can run as script.
(function () {
  "use strict";
  const root = document.getElementById("brook-demo");
  const tenant = root.dataset.tenant;
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("content");
  const status = document.getElementById("status");
  const storageKey = "brook-demo-session:" + tenant;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(message) {
    const item = el("li", "message " + message.role + (message.status === "failed" ? " failed" : ""));
    if (message.steps && message.steps.length) {
      const steps = el("ol", "steps");
      for (const step of message.steps) {
        const line = el("li");
        line.append(el("span", "kind", step.kind), step.title);
        if (step.detail) line.append(" — " + step.detail);
        if (step.duration_ms !== null) line.append(" (" + step.duration_ms + " ms)");
        steps.append(line);
      }
      item.append(steps);
    }
    if (message.reasoning) item.append(el("p", "reasoning", message.reasoning));
    item.append(el("div", "content", message.content));
    if (message.error) item.append(el("p", "error", message.error.code + ": " + message.error.message));
    list.append(item);
  }

  async function api(path, options) {
    const response = await fetch(path, options);
    const body = await response.json();
    if (!response.ok) throw Object.assign(new Error(body.message || "Request failed"), { body: body });
    return body;
  }

  async function session() {
    const saved = JSON.parse(localStorage.getItem(storageKey) || "null");
    if (saved) {
      try {
        const history = await api("/api/v1/sessions/" + saved.id, {
          headers: { Authorization: "Bearer " + saved.token },
        });
        history.messages.forEach(render);
        return saved;
      } catch (error) {
        localStorage.removeItem(storageKey);
      }
    }
    const created = await api("/api/v1/sessions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tenant: tenant }),
    });
    const current = { id: created.id, token: created.token };
    localStorage.setItem(storageKey, JSON.stringify(current));
    return current;
  }

  const ready = session();

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const content = input.value;
    if (!content.trim()) return;
    const current = await ready;
    render({ role: "user", content: content, steps: [] });
    input.value = "";
    status.textContent = "The assistant is working…";
    try {
      const reply = await api("/api/v1/sessions/" + current.id + "/messages", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + current.token },
        body: JSON.stringify({ content: content, client_message_id: crypto.randomUUID(), mode: "batch" }),
      });
      render(reply);
      status.textContent = "";
    } catch (error) {
      status.textContent = "Error: " + error.message;
    }
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
})();
