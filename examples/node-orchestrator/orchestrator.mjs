// A tenant's own orchestrator for Brook, in plain Node 20 (fetch, no npm packages): it claims visitors' replies
// and pushes what its agent does, step by step (docs/agents.md). Replace `think()` with your agent.
//
//   BROOK_URL=http://127.0.0.1:8000 BROOK_SERVER_KEY=bsk_… node orchestrator.mjs [--once]
//
// --once: answer one reply, then exit (the test suite runs it so).

const BROOK = process.env.BROOK_URL ?? "http://127.0.0.1:8000";
const KEY = process.env.BROOK_SERVER_KEY;
if (!KEY) {
  console.error("Set BROOK_SERVER_KEY to a server key (manage.py tenants keys create <tenant> --name …).");
  process.exit(2);
}

async function call(path, body) {
  const response = await fetch(`${BROOK}/api/v1/agent/${path}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify(body ?? {}),
  });
  if (response.status === 204) return null;
  const answer = await response.json();
  if (!response.ok) throw new Error(`${path}: ${response.status} ${answer.code}: ${answer.message}`);
  return answer;
}

// One reply's pushes: each event gets the next of our own sequence numbers; a failed push is retried as it was
// (Brook acknowledges what it already has), and every answer says whether the visitor pressed Stop.
function pusher(replyId) {
  let seq = 0;
  return async function push(type, data = {}) {
    const event = { seq: ++seq, type, data };
    for (let attempt = 1; ; attempt++) {
      try {
        const answer = await call(`replies/${replyId}/events`, { events: [event] });
        return answer.stop_requested;
      } catch (error) {
        if (attempt >= 3 || !String(error.message).startsWith("replies/")) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  };
}

// The agent: here a stand-in that looks the question over, "calls a tool", and answers word by word.
async function think(conversation, push) {
  const question = conversation.at(-1)?.content ?? "";
  await push("step.started", { index: 0, kind: "thinking", title: "Reading the question" });
  await push("reasoning.delta", { delta: `The visitor asked ${question.length} characters' worth. ` });
  await push("step.completed", { index: 0 });
  await push("tool.call", { call_id: "count-1", name: "word_count", arguments: { text: question } });
  const words = question.split(/\s+/).filter(Boolean).length;
  await push("tool.result", { call_id: "count-1", result: { words } });
  for (const word of `Your question has ${words} words.`.split(" ")) {
    if (await push("text.delta", { delta: word + " " })) {
      await push("message.cancelled", { reason: "stopped by the visitor" });
      return;
    }
  }
  await push("usage", { model: "node-example", prompt_tokens: words, completion_tokens: 5 });
  await push("message.completed");
}

const once = process.argv.includes("--once");
for (;;) {
  const claim = await call("claims", { wait: 20 });
  if (claim === null) continue; // nobody asked in 20 s: ask again
  const push = pusher(claim.reply_id);
  try {
    await think(claim.conversation, push);
  } catch (error) {
    console.error(`reply ${claim.reply_id}: ${error.message}`);
    await push("message.failed", { message: "The assistant could not finish this reply." }).catch(() => {});
  }
  console.log(`answered ${claim.reply_id}`);
  if (once) break;
}
