// The rumor dashboard (API.md §7): reads this broker's API and shows the
// cluster, topics and subscribers; follows a topic over Server-Sent
// Events; publishes. Errors are shown in words.
"use strict";

// The cluster's health is read four times a second (a broker that goes
// down shows within 2 s: peers call it dead after 1.5 s of silence), the
// rest, which costs the broker more, once a second.
const HEALTH_MS = 250;
const DETAILS_MS = 1000;
const TAIL_KEEP = 200;

let token = sessionStorage.getItem("rumor-token") || "";
// Per topic, the last published count seen and when: for the rate.
const published = new Map();
let tailing = null;

function headers(extra) {
  const all = Object.assign({}, extra || {});
  if (token) all["Authorization"] = "Bearer " + token;
  return all;
}

// A request's JSON, or an Error whose message says what went wrong.
async function api(path, options) {
  let response;
  try {
    response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
  } catch (e) {
    throw new Error("this broker does not answer (" + e.message + ")");
  }
  if (response.status === 401) {
    askForToken(token ? "The token was refused." : "This broker needs a client token.");
    throw new Error("the token was refused (401 unauthenticated)");
  }
  const text = await response.text();
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try {
      const body = JSON.parse(text);
      message = response.status + " " + body.error.code + ": " + body.error.message;
    } catch (_) { /* not the JSON error body */ }
    throw new Error(message);
  }
  return path === "/metrics" ? text : JSON.parse(text);
}

function askForToken(why) {
  document.getElementById("login-why").textContent = why;
  document.getElementById("login").hidden = false;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fill(tableId, rows) {
  const body = document.querySelector("#" + tableId + " tbody");
  body.replaceChildren(...rows);
}

function row(cells, attributes) {
  const tr = document.createElement("tr");
  for (const [name, value] of Object.entries(attributes || {})) tr.setAttribute(name, value);
  tr.append(...cells);
  return tr;
}

function setStatus(id, text, level) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.className = "status " + level;
}

// The value of each series of `name` in Prometheus text, by label value.
function series(metrics, name, label) {
  const values = new Map();
  const pattern = new RegExp("^" + name + "\\{" + label + "=\"([^\"]*)\"\\} (\\S+)$");
  for (const line of metrics.split("\n")) {
    const match = pattern.exec(line);
    if (match) values.set(match[1], Number(match[2]));
  }
  return values;
}

function renderCluster(cluster) {
  document.getElementById("broker").textContent = "broker " + cluster.self;
  const down = cluster.members.filter((m) => !m.alive).map((m) => m.id);
  const alive = cluster.members.length - down.length;
  const summary = alive + " of " + cluster.members.length + " brokers alive, leader " +
    (cluster.leader || "none") + " (term " + cluster.term + "), mode " + cluster.mode;
  if (down.length > 0) {
    setStatus("health", "Down: " + down.join(", ") + ". " + summary + ".", "bad");
  } else if (!cluster.leader) {
    setStatus("health", "No leader: an election is under way. " + summary + ".", "warn");
  } else {
    setStatus("health", "Healthy: " + summary + ".", "ok");
  }
  fill("members", cluster.members.map((m) => {
    const roles = [];
    if (m.id === cluster.leader) roles.push("leader");
    if (m.id === cluster.self) roles.push("this broker");
    return row([
      cell(m.id),
      cell(m.alive ? "up" : "down", "state"),
      cell(roles.join(", ")),
      cell(m.lag === undefined ? "–" : String(m.lag), "number"),
    ], { "data-member": m.id, class: m.alive ? "up" : "down" });
  }));
}

function limitsText(limits) {
  const parts = [];
  if (limits.max_messages !== undefined) parts.push(limits.max_messages + " messages");
  if (limits.max_bytes !== undefined) parts.push(limits.max_bytes + " bytes");
  if (limits.max_age !== undefined) parts.push(limits.max_age + " old");
  return parts.length ? parts.join(", ") : "–";
}

function renderTopics(topics, metrics) {
  const bytes = series(metrics, "rumor_topic_bytes", "topic");
  const counts = series(metrics, "rumor_topic_published_total", "topic");
  const now = Date.now();
  fill("topics", topics.map((t) => {
    const count = counts.get(t.name) || 0;
    const before = published.get(t.name);
    let rate = "–";
    if (before && now > before.at) {
      rate = ((count - before.count) * 1000 / (now - before.at)).toFixed(1);
    }
    published.set(t.name, { count: count, at: now });
    return row([
      cell(t.name),
      cell(String(t.messages), "number messages"),
      cell(String(bytes.get(t.name) || 0), "number"),
      cell(String(t.subscribers), "number"),
      cell(rate, "number"),
      cell(limitsText(t.limits || {})),
    ], { "data-topic": t.name });
  }));
}

function renderSubscribers(subscribers) {
  const rows = [];
  for (const s of subscribers) {
    for (const sub of s.subscriptions) {
      rows.push(row([
        cell(s.id),
        cell(sub.topic),
        cell(sub.shared ? "shared" : "each"),
        cell(String(sub.pending), "number"),
        cell(String(sub.leased), "number"),
        cell((sub.oldest_unacked_age_ms / 1000).toFixed(1) + " s", "number"),
      ], { "data-subscription": s.id + "/" + sub.topic }));
    }
  }
  fill("subscribers", rows);
}

async function refreshHealth() {
  try {
    renderCluster(await api("/cluster"));
  } catch (e) {
    setStatus("health", "Cannot read the cluster: " + e.message + ".", "bad");
  } finally {
    setTimeout(refreshHealth, HEALTH_MS);
  }
}

async function refreshDetails() {
  try {
    const [topics, subscribers, metrics] = await Promise.all([
      api("/topics"), api("/subscriptions"), api("/metrics"),
    ]);
    renderTopics(topics, metrics);
    renderSubscribers(subscribers);
    setStatus("details", "", "");
  } catch (e) {
    setStatus("details", "Cannot read topics and subscribers: " + e.message + ".", "bad");
  } finally {
    setTimeout(refreshDetails, DETAILS_MS);
  }
}

async function publish(event) {
  event.preventDefault();
  const topic = document.getElementById("publish-topic").value.trim();
  const body = {
    publisher: document.getElementById("publish-publisher").value.trim(),
    payload: document.getElementById("publish-payload").value,
  };
  try {
    const answer = await api("/topics/" + encodeURIComponent(topic) + "/messages", {
      method: "POST",
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
    setStatus("publish-result", "Published " + answer.id + ".", "ok");
  } catch (e) {
    setStatus("publish-result", "Not published: " + e.message + ".", "bad");
  }
}

// Reads the topic's stream with fetch (EventSource cannot send a token)
// and appends each message to the tail.
async function follow(event) {
  event.preventDefault();
  if (tailing) tailing.abort();
  const topic = document.getElementById("tail-topic").value.trim();
  const list = document.getElementById("tail");
  list.replaceChildren();
  tailing = new AbortController();
  let response;
  try {
    response = await fetch("/topics/" + encodeURIComponent(topic) + "/stream",
      { headers: headers(), signal: tailing.signal });
  } catch (e) {
    setStatus("tail-status", "Cannot follow " + topic + ": " + e.message + ".", "bad");
    return;
  }
  if (!response.ok) {
    let why = response.status + " " + response.statusText;
    try { const body = await response.json(); why = body.error.code + ": " + body.error.message; } catch (_) { /* keep the status */ }
    setStatus("tail-status", "Cannot follow " + topic + ": " + why + ".", "bad");
    return;
  }
  setStatus("tail-status", "Following " + topic + ": new messages appear below.", "ok");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split("\n").find((line) => line.startsWith("data: "));
        if (!data || event.startsWith("event: end")) continue;
        const message = JSON.parse(data.slice(6));
        const item = document.createElement("li");
        item.textContent = message.id + "  " + message.publisher + ": " + message.payload;
        list.append(item);
        while (list.children.length > TAIL_KEEP) list.firstChild.remove();
      }
    }
    setStatus("tail-status", "The stream of " + topic + " ended (topic deleted or broker stopped).", "warn");
  } catch (e) {
    if (e.name !== "AbortError") {
      setStatus("tail-status", "Lost the stream of " + topic + ": " + e.message + ".", "bad");
    }
  }
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("rumor-token", token);
  document.getElementById("login").hidden = true;
});
document.getElementById("publish-form").addEventListener("submit", publish);
document.getElementById("tail-form").addEventListener("submit", follow);
refreshHealth();
refreshDetails();
