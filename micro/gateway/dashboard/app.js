// The gateway's dashboard: the registry as server-sent events (/_/events),
// a service's methods from /_/describe/{service}, and calls through the
// gateway itself. Everything from the registry is text (textContent), never
// markup.
"use strict";

let state = { services: [], topics: [] };
let described = {}; // registry service -> its methods, once fetched

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// selected is what the URL's fragment names: #greeter or #topic:events.
function selected() {
  const h = decodeURIComponent(location.hash.slice(1));
  if (h.startsWith("topic:")) return { topic: h.slice(6) };
  return h ? { service: h } : {};
}

function render() {
  const sel = selected();
  const list = $("services");
  const focused = document.activeElement && document.activeElement.dataset.target;
  list.replaceChildren();
  for (const s of state.services) {
    const serving = s.nodes.filter((n) => n.health === "SERVING").length;
    const b = el("button", { type: "button", "data-target": s.name, "aria-current": String(sel.service === s.name) },
      s.name, el("span", { class: "count" }, `${serving} of ${s.nodes.length} ${s.nodes.length === 1 ? "node" : "nodes"} SERVING`));
    b.addEventListener("click", () => { location.hash = encodeURIComponent(s.name); });
    list.append(el("li", { "data-service": s.name }, b));
  }
  if (state.services.length === 0) list.append(el("li", {}, "none"));
  const topics = $("topics");
  topics.replaceChildren();
  for (const t of state.topics) {
    const b = el("button", { type: "button", "data-target": "topic:" + t.topic, "aria-current": String(sel.topic === t.topic) },
      t.topic, el("span", { class: "count" }, `${t.subscribers.length} subscriber ${t.subscribers.length === 1 ? "node" : "nodes"}`));
    b.addEventListener("click", () => { location.hash = "topic:" + encodeURIComponent(t.topic); });
    topics.append(el("li", { "data-topic": t.topic }, b));
  }
  if (state.topics.length === 0) topics.append(el("li", {}, "none"));
  if (focused) { // keep the keyboard where it was across re-renders
    const again = document.querySelector(`nav button[data-target="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  renderSelection(sel);
}

function nodeRows(nodes) {
  return nodes.map((n) => el("tr", { "data-node": n.id, "data-health": n.health },
    el("td", {}, el("code", {}, n.id)),
    el("td", {}, el("code", {}, n.address)),
    el("td", {}, n.version || "–"),
    el("td", {}, Object.entries(n.metadata || {}).map(([k, v]) => `${k}=${v}`).join(", ") || "–"),
    el("td", { class: "health " + n.health }, n.health)));
}

function renderSelection(sel) {
  const svc = state.services.find((s) => s.name === sel.service);
  const topic = state.topics.find((t) => t.topic === sel.topic);
  $("hint").hidden = Boolean(svc || topic);
  $("service").hidden = !svc;
  $("topic").hidden = !topic;
  if (topic) {
    $("topic-name").textContent = "Topic " + topic.topic;
    $("subscribers").replaceChildren(...topic.subscribers.map((n) =>
      el("li", {}, el("code", {}, n.id), " at ", el("code", {}, n.address))));
  }
  if (!svc) return;
  if ($("service-name").textContent !== svc.name) {
    $("service-name").textContent = svc.name;
    $("answer").textContent = "";
    $("served-by").textContent = "";
    describe(svc.name);
  }
  $("nodes").tBodies[0].replaceChildren(...nodeRows(svc.nodes));
}

function schemaList(s) {
  const ul = el("ul", {});
  for (const f of s.fields) {
    const li = el("li", {}, el("code", {}, f.name), ": ", (f.repeated ? "repeated " : "") + f.type);
    if (f.message) li.append(schemaList(f.message));
    ul.append(li);
  }
  if (s.fields.length === 0) ul.append(el("li", {}, "no fields"));
  return ul;
}

async function describe(name) {
  const box = $("methods");
  box.replaceChildren(el("p", {}, "learning the methods by reflection…"));
  $("method").replaceChildren();
  let services;
  try {
    const rsp = await fetch("/_/describe/" + encodeURIComponent(name));
    services = await rsp.json();
    if (!rsp.ok) throw new Error(services.message || rsp.statusText);
  } catch (e) {
    box.replaceChildren(el("p", { class: "error" }, String(e.message || e)));
    return;
  }
  if ($("service-name").textContent !== name) return; // another was chosen meanwhile
  described[name] = services;
  box.replaceChildren();
  for (const s of services) {
    for (const m of s.methods) {
      const kind = m.clientStreaming && m.serverStreaming ? "bidirectional streaming"
        : m.clientStreaming ? "client streaming" : m.serverStreaming ? "server streaming" : "unary";
      box.append(el("details", {},
        el("summary", {}, el("code", {}, `${s.service}/${m.name}`), ` (${kind})`),
        el("p", {}, "Request ", el("code", {}, m.request.name)), schemaList(m.request),
        el("p", {}, "Response ", el("code", {}, m.response.name)), schemaList(m.response)));
      if (!m.clientStreaming && !m.serverStreaming) {
        $("method").append(el("option", { value: m.call, "data-example": m.example }, m.call));
      }
    }
  }
  pickExample();
}

function pickExample() {
  const opt = $("method").selectedOptions[0];
  if (opt) $("request").value = opt.dataset.example;
}

async function call(ev) {
  ev.preventDefault();
  const name = $("service-name").textContent;
  const method = $("method").value;
  if (!method) return;
  const connect = $("protocol").value === "connect";
  // Connect's unary protocol is a POST of the request as JSON to
  // /{pkg.Service}/{Method} (here under the service's base URL).
  const url = connect ? `/${encodeURIComponent(name)}/${method}` : `/api/${encodeURIComponent(name)}/${method}`;
  const headers = { "Content-Type": "application/json" };
  if (connect) headers["Connect-Protocol-Version"] = "1";
  $("send").disabled = true;
  $("answer").className = "";
  try {
    const rsp = await fetch(url, { method: "POST", headers, body: $("request").value });
    const text = await rsp.text();
    $("served-by").textContent = rsp.headers.get("Micro-Node") || rsp.headers.get("Micro-Node-Address") || "–";
    let shown = text;
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* as it came */ }
    $("answer").textContent = (rsp.ok ? "" : `${rsp.status} ${rsp.statusText}\n`) + shown;
    if (!rsp.ok) $("answer").className = "error";
  } catch (e) {
    $("answer").textContent = String(e);
    $("answer").className = "error";
  } finally {
    $("send").disabled = false;
  }
}

function connectEvents() {
  const es = new EventSource("/_/events");
  es.addEventListener("state", (e) => {
    state = JSON.parse(e.data);
    const n = state.services.length;
    $("conn").textContent = `${state.registry} registry: ${n} ${n === 1 ? "service" : "services"}, live`;
    render();
  });
  es.onerror = () => { $("conn").textContent = "reconnecting…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  $("call").addEventListener("submit", call);
  $("method").addEventListener("change", pickExample);
  window.addEventListener("hashchange", () => { render(); $("main").focus(); });
  connectEvents();
});
