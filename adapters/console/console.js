// The contactstream console: a supervisor's wallboard and an agent's desk over the
// HTTP API. Plain JavaScript, no build step, no outside request. The token lives in this
// tab's sessionStorage and travels only in the Authorization header (the alert stream is
// read with fetch and a stream reader, since EventSource cannot send that header).
"use strict";

const TOKEN_KEY = "contactstream.token";
const AGENT_KEY = "contactstream.agent";
const FIGURES_EVERY_MS = 10000;
const MAX_ALERT_ROWS = 40;
const PRIORITIES = ["urgent", "high", "normal", "low"];
const KIND_WORDS = {
  "sla.breached": "SLA breached", "sla.warning": "SLA warning",
  "escalation.repeat_complaint": "Repeat complaint",
  "escalation.low_satisfaction": "Low satisfaction",
};
const METRIC_WORDS = {first_response: "1st response", next_response: "next response",
  resolution: "resolution"};

const state = {token: null, role: null, view: null, streaming: false, stream: null,
  figuresTimer: null, lastSeq: 0, customerId: null, timelineNext: null, refreshSoon: null};

const $ = (id) => document.getElementById(id);

// -- small helpers -------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k === "dir" || k.startsWith("aria-") || k === "role"
             || k === "type" || k === "for" || k === "placeholder" || k === "scope") {
      node.setAttribute(k, v === true ? "" : String(v));
    } else node[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function duration(seconds) {
  const s = Math.round(Math.abs(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function shortDuration(seconds) {
  // for a tile: what fits in a few characters
  const s = Math.round(seconds);
  if (s < 100) return `${s} s`;
  if (s < 6000) return `${(s / 60).toFixed(1)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function localTime(iso) {
  // year-month-day hour:minute in the browser's zone: short, and the same everywhere
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`
    + ` ${two(d.getHours())}:${two(d.getMinutes())}`;
}

function shortId(id) {
  // case ids are UUIDs: their first 8 characters tell them apart on a screen
  return id && id.length > 12 ? el("span", {title: id}, `${id.slice(0, 8)}…`) : id || "–";
}

function pct(x) { return x === null || x === undefined ? "–" : `${Number(x).toFixed(1)} %`; }

// An API error in words a person at the desk can act on.
class ApiProblem extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function inWords(problem) {
  const said = problem.message || "";
  switch (problem.status) {
    case 0: return "contactstream cannot be reached: check the network and try again.";
    case 401: return "Your token is not accepted (any more): log out and log in again.";
    case 403: return "Your role may not do this.";
    case 404: return `Not found: ${said}.`;
    case 409:
      if (problem.code === "invalid_transition") return `Not possible now: ${said}.`;
      return `Someone changed this meanwhile: ${said}.`;
    case 422: return `Refused: ${said}.`;
    case 429: return `Too many at once: ${said}.`;
    case 503: return "contactstream is busy or restarting: try again in a moment.";
    default: return `Something went wrong (${problem.status}): ${said}.`;
  }
}

async function api(path, options = {}) {
  const headers = {Accept: "application/json", Authorization: `Bearer ${state.token}`};
  const init = {method: options.method || "GET", headers, cache: "no-store"};
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    throw new ApiProblem(0, "network", String(err));
  }
  let body = null;
  try { body = await resp.json(); } catch (err) { body = null; }
  if (!resp.ok) {
    const e = (body && body.error) || {};
    throw new ApiProblem(resp.status, e.code || "http_error", e.message || resp.statusText);
  }
  return body;
}

// -- logging in ----------------------------------------------------------------------------
async function roleOf() {
  // the API decides: what this token may read says which parts to show
  try {
    await api("/v1/cases?limit=1");
  } catch (p) {
    if (p.status === 403) return "none";
    throw p;
  }
  try {
    await api("/v1/alerts?limit=1");
    return "supervisor";
  } catch (p) {
    if (p.status === 403) return "agent";
    throw p;
  }
}

async function login(token) {
  state.token = token;
  $("login-error").textContent = "";
  let role;
  try {
    role = await roleOf();
  } catch (p) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent = p.status === 401
      ? "This token is not known: check it in tokens.json." : inWords(p);
    showLogin();
    return;
  }
  if (role === "none") {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("login-error").textContent =
      "This token's role may not read customers or cases: use an agent's or a supervisor's.";
    showLogin();
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.role = role;
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  $("who").textContent = role === "supervisor" ? "supervisor" : "agent";
  $("tab-wallboard").hidden = role !== "supervisor";
  show(role === "supervisor" ? "wallboard" : "agent");
}

function showLogin() {
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  $("wallboard").hidden = true;
  $("agent").hidden = true;
  $("who").textContent = "";
  $("token").focus();
}

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  stopWallboard();
  state.token = state.role = state.view = state.customerId = null;
  state.lastSeq = 0;
  $("alerts").tBodies[0].replaceChildren();
  $("customer").hidden = true;
  $("token").value = "";
  showLogin();
}

function show(view) {
  if (view === "wallboard" && state.role !== "supervisor") return;
  state.view = view;
  $("wallboard").hidden = view !== "wallboard";
  $("agent").hidden = view !== "agent";
  for (const b of document.querySelectorAll("#nav button")) {
    b.setAttribute("aria-pressed", String(b.dataset.view === view));
  }
  if (view === "wallboard") startWallboard(); else stopWallboard();
  if (view === "agent") $("lookup-value").focus();
}

// -- the wallboard -------------------------------------------------------------------------
function startWallboard() {
  if (state.figuresTimer === null) {
    refreshFigures();
    state.figuresTimer = setInterval(refreshFigures, FIGURES_EVERY_MS);
  }
  if (!state.streaming) {
    state.streaming = true;
    // back on the wallboard: the stream resumes after the last alert shown
    if (state.lastSeq) openStream(); else loadAlerts();
  }
}

function stopWallboard() {
  if (state.figuresTimer !== null) clearInterval(state.figuresTimer);
  state.figuresTimer = null;
  state.streaming = false;
  if (state.stream !== null) state.stream.abort();
  state.stream = null;
}

function refreshSoon() {
  // a new alert moves the figures: refresh them shortly, once for a burst
  if (state.refreshSoon !== null) return;
  state.refreshSoon = setTimeout(() => { state.refreshSoon = null; refreshFigures(); }, 500);
}

function overall(items, kind) {
  let n = 0, sum = 0;
  for (const row of items) {
    const block = row[kind];
    if (block && block.score !== null && block.responses) {
      n += block.responses;
      sum += block.score * block.responses;
    }
  }
  return {score: n ? sum / n : null, responses: n};
}

async function refreshFigures() {
  try {
    const [service, satisfaction, breachedOpen, breachedWaiting] = await Promise.all([
      api("/v1/reports/service?today=true"),
      api("/v1/reports/satisfaction?group_by=channel&window_days=7"),
      api("/v1/cases?breached=true&status=open&limit=100"),
      api("/v1/cases?breached=true&status=waiting&limit=100"),
    ]);
    if (state.view !== "wallboard") return;
    showService(service);
    showSatisfaction(satisfaction.items || []);
    showBreached([...breachedOpen.items, ...breachedWaiting.items],
                 Boolean(breachedOpen.next || breachedWaiting.next));
    $("updated").textContent = new Date().toLocaleTimeString();
    $("wallboard-error").textContent = "";
  } catch (p) {
    $("wallboard-error").textContent = inWords(p);
  }
}

function showService(r) {
  const c = r.counts || {};
  $("t-attainment").textContent = pct(r.sla_attainment_pct);
  $("t-attainment").className = "big " + (r.sla_attainment_pct === null ? ""
    : r.sla_attainment_pct >= 90 ? "good" : r.sla_attainment_pct >= 75 ? "fair" : "poor");
  $("t-attainment-n").textContent = `${c.cases_with_sla || 0} cases with an SLA opened today`;
  $("t-first-response").textContent =
    r.mean_first_response_s === null ? "–" : shortDuration(r.mean_first_response_s);
  $("t-first-response-n").textContent =
    `mean today, over ${c.first_responses || 0} answered cases`;
  $("t-backlog").textContent = String(c.backlog || 0);
  const urgent = (r.backlog || {}).urgent || 0;
  $("t-backlog-n").textContent = `${urgent} urgent`;
  $("timezone").textContent = r.timezone || "UTC";
  showBacklog(r.backlog_by_queue || []);
}

function showBacklog(rows) {
  const queues = new Map();
  for (const r of rows) {
    const q = r.queue === null ? "(no queue)" : r.queue;
    if (!queues.has(q)) queues.set(q, {});
    const cell = queues.get(q)[r.priority] || (queues.get(q)[r.priority] = {open: 0, waiting: 0});
    cell[r.status === "waiting" ? "waiting" : "open"] += r.cases;
  }
  const head = $("backlog").tHead;
  head.replaceChildren(el("tr", {}, el("th", {scope: "col"}, "Queue"),
    PRIORITIES.map((p) => el("th", {scope: "col", class: "n"}, p)),
    el("th", {scope: "col", class: "n"}, "all")));
  const body = $("backlog").tBodies[0];
  const totals = {};
  const line = (name, cells, cls) => {
    let all = 0, allWaiting = 0;
    const tds = PRIORITIES.map((p) => {
      const cell = cells[p] || {open: 0, waiting: 0};
      all += cell.open; allWaiting += cell.waiting;
      return el("td", {class: "n", "data-priority": p}, String(cell.open),
        cell.waiting ? el("span", {class: "w"}, ` +${cell.waiting}`) : null);
    });
    return el("tr", {class: cls, "data-queue": name}, el("th", {scope: "row", dir: "auto"}, name),
      tds, el("td", {class: "n"}, String(all),
        allWaiting ? el("span", {class: "w"}, ` +${allWaiting}`) : null));
  };
  const lines = [...queues.keys()].sort().map((q) => {
    for (const [p, cell] of Object.entries(queues.get(q))) {
      const t = totals[p] || (totals[p] = {open: 0, waiting: 0});
      t.open += cell.open; t.waiting += cell.waiting;
    }
    return line(q, queues.get(q), "");
  });
  if (lines.length > 1) lines.push(line("all queues", totals, "total"));
  body.replaceChildren(...lines);
}

function showSatisfaction(items) {
  const csat = overall(items, "csat"), nps = overall(items, "nps");
  $("t-csat").textContent = pct(csat.score);
  $("t-csat").className = "big " + (csat.score === null ? ""
    : csat.score >= 80 ? "good" : csat.score >= 60 ? "fair" : "poor");
  $("t-csat-n").textContent = `${csat.responses} answers`;
  $("t-nps").textContent = nps.score === null ? "–"
    : (nps.score > 0 ? "+" : "") + Math.round(nps.score);
  $("t-nps").className = "big " + (nps.score === null ? ""
    : nps.score >= 30 ? "good" : nps.score >= 0 ? "fair" : "poor");
  $("t-nps-n").textContent = `${nps.responses} answers`;
}

function showBreached(cases, more) {
  $("t-breached").textContent = `${cases.length}${more ? "+" : ""}`;
  $("tile-breached").classList.toggle("alarm", cases.length > 0);
  $("breached-empty").hidden = cases.length > 0;
  $("breached").tBodies[0].replaceChildren(...cases.slice(0, 12).map((c) =>
    el("tr", {"data-case": c.id}, el("td", {}, shortId(c.id)), el("td", {dir: "auto"}, c.queue || "–"),
      el("td", {}, c.priority), el("td", {}, c.status), el("td", {}, c.customer_id || "–"))));
}

async function loadAlerts() {
  // the latest alerts first, then the live stream from the last one seen: nothing between
  // the two is missed (the stream resumes after Last-Event-ID)
  try {
    const page = await api("/v1/alerts?limit=15");
    const items = page.items || [];
    for (const a of items.slice().reverse()) addAlert(a, false);
    state.lastSeq = Math.max(state.lastSeq, ...items.map((a) => a.seq || 0));
  } catch (p) {
    $("wallboard-error").textContent = inWords(p);
  }
  openStream();
}

async function openStream() {
  if (!state.streaming) return;
  const control = new AbortController();
  state.stream = control;
  $("stream-state").textContent = "connecting…";
  let retryMs = 1000;
  try {
    const headers = {Accept: "text/event-stream", Authorization: `Bearer ${state.token}`};
    if (state.lastSeq) headers["Last-Event-ID"] = String(state.lastSeq);
    const resp = await fetch("/v1/alerts/stream", {headers, signal: control.signal,
                                                   cache: "no-store"});
    if (!resp.ok) {
      let e = {};
      try { e = (await resp.json()).error || {}; } catch (err) { e = {}; }
      if (resp.status === 429) retryMs = 5000;
      throw new ApiProblem(resp.status, e.code || "http_error", e.message || resp.statusText);
    }
    $("stream-state").textContent = "live";
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        onStreamEvent(block);
      }
    }
  } catch (p) {
    if (control.signal.aborted) return;
    if (p instanceof ApiProblem) {
      $("wallboard-error").textContent = inWords(p);
      if (p.status === 401 || p.status === 403) {  // retrying cannot help
        state.streaming = false;
        state.stream = null;
        $("stream-state").textContent = "stopped";
        return;
      }
    }
  }
  if (state.stream !== control || control.signal.aborted) return;
  state.stream = null;
  $("stream-state").textContent = "reconnecting…";
  setTimeout(() => { if (state.streaming && state.stream === null) openStream(); }, retryMs);
}

function onStreamEvent(block) {
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;  // a comment or keep-alive
  let alert;
  try { alert = JSON.parse(data.join("\n")); } catch (err) { return; }
  if (alert.seq && alert.seq <= state.lastSeq) return;
  state.lastSeq = Math.max(state.lastSeq, alert.seq || 0);
  addAlert(alert, true);
  refreshSoon();
}

function addAlert(a, live) {
  const body = $("alerts").tBodies[0];
  const level = a.level || "info";
  const row = el("tr", {"data-alert-id": a.id, "data-kind": a.kind, "data-case": a.case_id,
                        "data-seq": a.seq, "data-live": live, class: live ? "fresh" : ""},
    el("td", {}, el("span", {class: `kind ${level}`}, KIND_WORDS[a.kind] || a.kind)),
    el("td", {}, a.customer_id || "–"),
    el("td", {}, shortId(a.case_id)),
    el("td", {dir: "auto"}, a.queue || "–"),
    el("td", {}, METRIC_WORDS[a.metric] || a.metric || "–"),
    el("td", {class: "how-late", "data-due": a.due_at, "data-at": a.at}));
  body.prepend(row);
  lateness(row.lastChild);
  // when it was on screen, for the measured alert-to-screen latency (epoch ms)
  row.dataset.shownAt = String(Date.now());
  if (live) setTimeout(() => row.classList.remove("fresh"), 1000);
  while (body.rows.length > MAX_ALERT_ROWS) body.deleteRow(-1);
  $("alerts-empty").hidden = true;
}

function lateness(cell) {
  const due = cell.dataset.due ? Date.parse(cell.dataset.due) : NaN;
  if (Number.isNaN(due)) {
    const at = Date.parse(cell.dataset.at);
    cell.textContent = Number.isNaN(at) ? "–" : `${duration((Date.now() - at) / 1000)} ago`;
    cell.className = "how-late";
    return;
  }
  const late = (Date.now() - due) / 1000;
  cell.textContent = late >= 0 ? `late ${duration(late)}` : `due in ${duration(late)}`;
  cell.className = "how-late " + (late >= 0 ? "late" : "soon");
}

// -- the agent desk ------------------------------------------------------------------------
async function lookup(event) {
  event.preventDefault();
  const kind = $("lookup-kind").value, value = $("lookup-value").value.trim();
  $("lookup-error").textContent = "";
  if (!value) return;
  try {
    // POST with the identifier in the body: no personal data in a URL
    const found = await api("/v1/customers/lookup", {method: "POST", json: {[kind]: value}});
    await openCustomer(found.id);
  } catch (p) {
    $("customer").hidden = true;
    $("lookup-error").textContent = p.status === 404
      ? "No customer has that identifier." : inWords(p);
  }
}

async function openCustomer(id) {
  const view = await api(`/v1/customers/${encodeURIComponent(id)}`);
  state.customerId = view.id;
  showCustomer(view);
  $("customer").hidden = false;
  $("timeline").replaceChildren();
  state.timelineNext = null;
  await Promise.all([loadTimeline(), loadCases()]);
  $("c-name").focus();
}

function fact(name, ...value) {
  return [el("dt", {}, name), el("dd", {}, ...value)];
}

function showCustomer(v) {
  $("c-name").textContent = v.name || v.id;
  $("c-id").textContent = `customer ${v.id}`;
  const ids = v.identifiers || {};
  const idList = el("ul", {}, ...["email", "phone", "visitor_id", "id"].flatMap((k) =>
    (ids[k] || []).map((x) => el("li", {dir: "auto"}, `${k.replace("_", " ")}: ${x}`))));
  const counts = Object.entries(v.interaction_counts || {})
    .sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(" · ") || "none";
  const sat = v.satisfaction || {};
  const score = (b, unit) => b && b.score !== null ? `${Number(b.score).toFixed(1)}${unit}`
    + ` (${b.responses})` : "–";
  const value = v.value || {};
  const risk = v.churn_risk || {};
  const riskClass = risk.score >= 0.6 ? "risk-high" : risk.score >= 0.3 ? "risk-mid" : "";
  const consent = (v.consent || []).map((c) =>
    el("li", {}, `${c.channel} ${c.purpose}: ${c.granted ? "yes" : "no"}`));
  $("c-facts").replaceChildren(
    ...fact("Identifiers", idList),
    ...fact("Contacts", `${counts} (last ${localTime(v.last_contact_at)})`),
    ...fact("Satisfaction", `CSAT ${score(sat.csat, " %")} · NPS ${score(sat.nps, "")}`
      + ` · CES ${score(sat.ces, "")}`),
    ...fact("Value", `${value.lifetime_revenue ?? "0"} ${value.currency || ""}`
      + (value.segment ? ` · segment ${value.segment}` : "")),
    ...fact("Churn risk", el("span", {class: riskClass},
      risk.score === null || risk.score === undefined ? "–" : Number(risk.score).toFixed(2)),
      (risk.factors || []).length ? el("ul", {}, ...risk.factors.map((f) => el("li", {}, f)))
        : null),
    ...fact("Consent", consent.length ? el("ul", {}, ...consent) : "none given"));
}

function summary(item) {
  const p = item.payload || {};
  if (item.type === "purchase.completed") return `${p.amount} ${p.currency} · order ${p.order_id}`;
  if (item.type === "survey.answered") {
    return `${(p.kind || "").toUpperCase()} ${p.score}` + (p.comment ? ` · ${p.comment}` : "");
  }
  if (item.type === "web.visit") return p.url || "";
  if (item.type === "consent.changed") {
    return `${p.channel} ${p.purpose}: ${p.granted ? "granted" : "withdrawn"}`;
  }
  if (item.type.startsWith("call.")) {
    return [p.direction, p.outcome, p.duration_s ? `${p.duration_s} s` : ""]
      .filter(Boolean).join(" · ");
  }
  return [p.subject, p.text, p.body, p.description, p.category && `(${p.category})`]
    .filter(Boolean).join(" — ");
}

async function loadTimeline() {
  const id = state.customerId;
  let path = `/v1/customers/${encodeURIComponent(id)}/timeline?limit=15`;
  if (state.timelineNext) path += `&before=${encodeURIComponent(state.timelineNext)}`;
  const page = await api(path);
  if (id !== state.customerId) return;
  state.timelineNext = page.next;
  $("timeline").append(...page.items.map((item) => el("li", {"data-event": item.event_id,
                                                             "data-at": item.occurred_at},
    el("span", {class: "when"}, localTime(item.occurred_at)),
    el("span", {class: "chan"}, item.channel || ""),
    el("span", {class: "what", dir: "auto"}, summary(item),
      el("span", {class: "type"}, item.type,
        item.case_id ? " · case " : "", item.case_id ? shortId(item.case_id) : "")))));
  $("older").hidden = !page.next;
}

async function loadCases() {
  const id = state.customerId;
  const list = await api(`/v1/cases?customer_id=${encodeURIComponent(id)}&limit=30`);
  // the open and waiting cases with their clocks; the latest resolved ones, to reopen
  const open = list.items.filter((c) => c.status !== "resolved").slice(0, 10);
  const resolved = list.items.filter((c) => c.status === "resolved").slice(0, 3);
  const views = await Promise.all([...open, ...resolved].map(
    (c) => api(`/v1/cases/${encodeURIComponent(c.id)}`)));
  if (id !== state.customerId) return;
  $("cases").replaceChildren(...views.map(caseCard));
  $("cases-empty").hidden = open.length > 0;
  tick();
}

function caseCard(c) {
  const card = el("article", {class: "case", "data-case": c.id, "data-status": c.status});
  fillCase(card, c);
  return card;
}

function fillCase(card, c) {
  card.dataset.status = c.status;
  const breached = Object.values(c.sla || {}).some((k) => k.breached);
  card.classList.toggle("is-breached", breached && c.status !== "resolved");
  const clocks = Object.entries(c.sla || {}).map(([metric, k]) =>
    el("li", {"data-metric": metric},
      el("span", {class: "metric"}, METRIC_WORDS[metric] || metric),
      el("span", {class: "left", "data-due": k.due_at, "data-paused": k.paused,
                  "data-stopped": k.stopped_at || "", "data-breached": k.breached})));
  const text = el("input", {type: "text", placeholder: "reply text or resolution",
                            "aria-label": `Reply text or resolution for case ${c.id}`});
  const result = el("p", {class: "result", role: "status"});
  const act = (action) => el("button", {type: "button", "data-action": action,
    onclick: () => caseAction(card, c.id, action, text, result)}, action);
  card.replaceChildren(
    el("h4", {}, "Case ", shortId(c.id)),
    el("div", {class: "meta"}, [c.status, c.priority, c.queue && `queue ${c.queue}`,
      c.channel, c.agent_id ? `agent ${c.agent_id}` : "unassigned",
      `opened ${localTime(c.opened_at)}`].filter(Boolean).join(" · ")),
    clocks.length ? el("ul", {class: "clocks"}, ...clocks)
      : el("p", {class: "muted"}, "No SLA policy."),
    el("div", {class: "actions"}, text,
       ...["assign", "reply", "wait", "resolve", "reopen"].map(act)),
    result);
}

async function caseAction(card, id, action, text, result) {
  const agent = $("agent-id").value.trim();
  const body = {};
  if (action === "assign" || action === "reply") {
    if (!agent) {
      result.className = "result error";
      result.textContent = "Give your agent id (top right) first.";
      $("agent-id").focus();
      return;
    }
    body.agent_id = agent;
  }
  if (action === "reply" && text.value.trim()) body.text = text.value.trim();
  if (action === "resolve" && text.value.trim()) body.resolution = text.value.trim();
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    const updated = await api(`/v1/cases/${encodeURIComponent(id)}/${action}`,
                              {method: "POST", json: body});
    fillCase(card, updated);
    const done = card.querySelector(".result");
    done.className = "result ok-msg";
    done.textContent = `Done: ${action}. The case is ${updated.status} now.`;
    tick();
    card.querySelector(`button[data-action="${action}"]`).focus();
  } catch (p) {
    result.className = "result error";
    result.textContent = inWords(p);
    for (const b of card.querySelectorAll("button")) b.disabled = false;
  }
}

// -- the clocks, every second ----------------------------------------------------------------
function tick() {
  for (const cell of document.querySelectorAll("#alerts td.how-late")) lateness(cell);
  for (const left of document.querySelectorAll("#cases .left")) {
    const d = left.dataset;
    if (d.stopped) { left.textContent = d.breached === "true" ? "missed" : "met"; continue; }
    if (!d.due) { left.textContent = "–"; continue; }
    const remaining = (Date.parse(d.due) - Date.now()) / 1000;
    const paused = d.paused === "true" ? " (paused)" : "";
    left.textContent = remaining >= 0 ? `${duration(remaining)} left${paused}`
      : `late ${duration(remaining)}${paused}`;
    left.className = "left " + (remaining < 0 ? "late" : remaining < 600 ? "soon" : "");
  }
}

// -- start ---------------------------------------------------------------------------------
function keys(event) {
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName);
  if (event.key === "Escape" && typing) { event.target.blur(); return; }
  if (typing || event.altKey || event.ctrlKey || event.metaKey || !state.role) return;
  if (event.key === "1" && state.role === "supervisor") { show("wallboard"); event.preventDefault(); }
  if (event.key === "2") { show("agent"); event.preventDefault(); }
  if (event.key === "/") { show("agent"); $("lookup-value").focus(); event.preventDefault(); }
}

function start() {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    login($("token").value.trim());
  });
  $("logout").addEventListener("click", logout);
  $("lookup-form").addEventListener("submit", lookup);
  $("older").addEventListener("click", () => loadTimeline().catch((p) => {
    $("lookup-error").textContent = inWords(p);
  }));
  for (const b of document.querySelectorAll("#nav button")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }
  $("agent-id").value = sessionStorage.getItem(AGENT_KEY) || "";
  $("agent-id").addEventListener("change", () =>
    sessionStorage.setItem(AGENT_KEY, $("agent-id").value.trim()));
  document.addEventListener("keydown", keys);
  setInterval(tick, 1000);
  // a login link /console#token=…: the fragment never reaches a server; drop it from the
  // address bar (and the history) at once
  let token = null;
  if (location.hash.startsWith("#token=")) {
    token = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname + location.search);
  }
  token = token || sessionStorage.getItem(TOKEN_KEY);
  if (token) login(token); else showLogin();
}

start();
