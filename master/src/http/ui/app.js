// wasmos web UI: a single page over the master's JSON API (/api/v1/), no build step, no
// request outside the master. Every value that comes from the cluster reaches the page as
// text (textContent), never as markup: framework and task names are chosen by tenants.
//
// The page's state lives in the URL (#/tasks?state=running&offset=100), so a link can be
// shared; a page refreshes its data every few seconds while it is visible.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "wasmos.token";
const REFRESH_MS = 2000;
const PAGE = 100;

// ---- small DOM helpers ---------------------------------------------------------------------

/** An element: h("td", {class: "num"}, "3", child, ...). Strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM, which the page's Content-Security-Policy allows (style attributes
    // in markup it does not).
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const link = (href, text, attrs) => h("a", { href, ...attrs }, text);
const pill = (text, kind) => h("span", { class: `pill ${kind || text}` }, text);

// ---- formatting ----------------------------------------------------------------------------

function cpus(milli) {
  const c = (milli || 0) / 1000;
  return Number.isInteger(c) ? String(c) : c.toFixed(c < 10 ? 2 : 1).replace(/\.?0+$/, "");
}
function mem(mb) {
  mb = mb || 0;
  if (mb >= 1024 * 1024) return (mb / 1024 / 1024).toFixed(1).replace(/\.0$/, "") + " TiB";
  if (mb >= 1024) return (mb / 1024).toFixed(1).replace(/\.0$/, "") + " GiB";
  return mb + " MiB";
}
function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400), hh = Math.floor(seconds / 3600) % 24;
  const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}
function when(unixMs) {
  if (!unixMs) return "–";
  const t = new Date(unixMs);
  const ago = (Date.now() - unixMs) / 1000;
  const text = ago >= 0 && ago < 86400 ? `${duration(ago)} ago` : t.toLocaleString();
  return h("time", { datetime: t.toISOString(), title: t.toLocaleString() }, text);
}
function short(id) {
  return id && id.length > 14 ? id.slice(0, 8) + "…" + id.slice(-4) : id || "";
}
function idLink(href, id) {
  return link(href, short(id), { class: "mono", title: id });
}

// ---- the URL is the state ------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || "") };
}
function href(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== undefined && v !== null && v !== false) q.set(k, v);
  const s = q.toString();
  return "#" + path + (s ? "?" + s : "");
}
const enc = encodeURIComponent;

// ---- talking to the master -----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(path, opts) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const res = await fetch(API + path, { headers, cache: "no-store", ...(opts || {}) });
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) throw new ApiError(res.status, typeof body === "object" ? body : { error: String(body) });
  return body;
}

// ---- the frame: status line, banner, login -------------------------------------------------

const state = { timer: null, generation: 0, lastOk: 0 };

function setStatus(kind, text) {
  const el = document.getElementById("status");
  el.replaceChildren(h("span", { class: `dot ${kind}` }), text);
}

function banner(text, bad) {
  const el = document.getElementById("banner");
  if (!text) { el.hidden = true; el.replaceChildren(); return; }
  el.hidden = false;
  el.className = bad ? "banner bad" : "banner";
  el.replaceChildren(text);
}

function showLogin(message) {
  stopRefresh();
  document.getElementById("logout").hidden = true;
  setStatus("down", "signed out");
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off",
    placeholder: "wasmos token", "aria-label": "Token", required: true });
  const err = h("p", { class: "error-text", role: "alert" }, message || "");
  const form = h("form", { onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("/cluster");
      render();
    } catch (x) {
      sessionStorage.removeItem(TOKEN_KEY);
      err.textContent = x.status === 401 ? "That token is not valid (unknown, revoked or expired)." : x.message;
    }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "This master enforces ACLs. Paste a token (", h("span", { class: "mono" }, "wasmos tokens create"),
      " makes one); it is kept in this browser tab only and sent with each request."),
    input, h("button", { class: "primary", type: "submit" }, "Sign in"), err);
  const main = document.getElementById("main");
  main.replaceChildren(h("section", { class: "panel login" }, form));
  input.focus();
}

function stopRefresh() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

/** Renders the page the URL names, then refreshes its data every REFRESH_MS. */
async function render() {
  stopRefresh();
  const generation = ++state.generation;
  const { parts, params } = route();
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === (parts[0] || "overview"));
  }
  document.getElementById("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  const page = pages[parts[0] || "overview"] || notFound;
  const main = document.getElementById("main");
  // A page builds its frame once (filters keep focus) and returns an update function.
  let update;
  try {
    update = page(main, parts.slice(1), params);
  } catch (x) {
    return failed(x);
  }
  const tick = async () => {
    if (generation !== state.generation) return;
    try {
      await update();
      state.lastOk = Date.now();
      setStatus("", "live");
      banner(null);
    } catch (x) {
      if (generation !== state.generation) return;
      if (!failed(x)) return;
    }
    if (generation === state.generation && !document.hidden) state.timer = setTimeout(tick, REFRESH_MS);
  };
  await tick();
}

/** Shows an error; returns false when the page cannot go on (signed out). */
function failed(x) {
  if (x instanceof ApiError && x.status === 401) {
    const had = sessionStorage.getItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(had ? `The master refused the token: ${x.message}` : "");
    return false;
  }
  if (x instanceof ApiError && x.body.code === "not_leader" || (x.status === 503 && x.body.leader_id)) {
    const where = x.body.leader_grpc_address ? ` (gRPC ${x.body.leader_grpc_address})` : "";
    banner(`This master does not lead the cluster; master ${x.body.leader_id ?? "?"}${where} does. Open that master's UI.`, false);
    setStatus("stale", "follower");
    return true;
  }
  if (x instanceof ApiError && x.status === 403) {
    banner(`Not allowed: ${x.message}`, true);
    return true;
  }
  setStatus("down", "master unreachable, retrying");
  banner(x instanceof ApiError ? x.message : `The master does not answer (${x.message}); retrying.`, true);
  return true;
}

function notFound(main) {
  main.replaceChildren(h("h1", {}, "Not found"), h("p", {}, "No such page. ", link("#/", "Go to the overview.")));
  return async () => {};
}

// ---- shared pieces -------------------------------------------------------------------------

function stackedBar(total, used, offered) {
  const pct = (v) => (total > 0 ? Math.min(100, (v / total) * 100) : 0);
  return h("div", { class: "bar", role: "img", "aria-label": `${Math.round(pct(used))}% used, ${Math.round(pct(offered))}% offered` },
    h("span", { class: "used", style: `width:${pct(used)}%` }),
    h("span", { class: "offered", style: `width:${pct(offered)}%` }));
}

function table(columns, rows, emptyText) {
  const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col" }, c.header || c.title)));
  const body = rows.length
    ? rows.map((r) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : c.cls }, c.cell(r)))))
    : [h("tr", {}, h("td", { class: "empty", colspan: columns.length }, emptyText || "Nothing here."))];
  return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), h("tbody", {}, body)));
}

/** Column headers that sort the rows on the page, the order kept in the URL (`sort=-name`). */
function sortable(columns, params, path) {
  const current = params.get("sort") || "";
  for (const c of columns) {
    if (!c.sortKey) continue;
    const dir = current === c.sortKey ? "ascending" : current === "-" + c.sortKey ? "descending" : null;
    const next = current === c.sortKey ? "-" + c.sortKey : c.sortKey;
    const p = Object.fromEntries(params);
    p.sort = next;
    c.header = h("button", { class: "sort", type: "button", "aria-sort": dir,
      onclick: () => { location.hash = href(path, p); } }, c.title);
  }
  return (rows) => {
    if (!current) return rows;
    const key = current.replace(/^-/, "");
    const col = columns.find((c) => c.sortKey === key);
    if (!col) return rows;
    const sign = current.startsWith("-") ? -1 : 1;
    return [...rows].sort((a, b) => {
      const x = col.value(a), y = col.value(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sign;
    });
  };
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function pager(offset, count, nextOffset, go) {
  return h("div", { class: "pager" },
    h("span", {}, count ? `${offset + 1}–${offset + count}` : "none"),
    h("button", { type: "button", disabled: offset === 0, onclick: () => go(Math.max(0, offset - PAGE)) }, "Previous"),
    h("button", { type: "button", disabled: nextOffset === null || nextOffset === undefined, onclick: () => go(nextOffset) }, "Next"));
}

const taskStates = ["staging", "starting", "running", "finished", "failed", "killed", "lost", "error", "unreachable"];

// ---- overview ------------------------------------------------------------------------------

function usageChart(samples) {
  const W = 600, H = 160, L = 34, B = 18;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + B}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Cluster CPU and memory in use over the last hour");
  const el = (tag, attrs, text) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  for (const f of [0, 0.5, 1]) {
    const y = H - f * (H - 8);
    el("line", { class: "axis", x1: L, x2: W, y1: y, y2: y });
    el("text", { x: 0, y: y + 4 }, `${f * 100}%`);
  }
  const now = Date.now(), span = 3600 * 1000;
  const x = (t) => L + ((t - (now - span)) / span) * (W - L);
  const line = (cls, frac) => {
    const pts = samples.map((s) => `${x(s.unix_ms).toFixed(1)},${(H - frac(s) * (H - 8)).toFixed(1)}`);
    if (pts.length) el("polyline", { class: cls, points: pts.join(" ") });
  };
  line("cpu", (s) => (s.cpu_total_millicpus ? s.cpu_used_millicpus / s.cpu_total_millicpus : 0));
  line("mem", (s) => (s.mem_total_mb ? s.mem_used_mb / s.mem_total_mb : 0));
  el("text", { x: L, y: H + B - 2 }, "1 hour ago");
  el("text", { x: W - 24, y: H + B - 2 }, "now");
  return svg;
}

const pages = {};

pages.overview = (main) => {
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Cluster"), body);
  return async () => {
    const [c, fws, usage] = await Promise.all([
      api("/cluster"), api("/frameworks"), api("/cluster/usage").catch(() => ({ samples: [] }))]);
    const r = c.resources;
    const card = (label, value, extra) => h("div", { class: "panel card" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value, extra ? h("small", {}, " ", extra) : null));
    const taskTotal = Object.values(c.tasks).reduce((a, b) => a + b, 0);
    const res = (name, fmt, key) => h("tr", {},
      h("th", { scope: "row" }, name),
      h("td", { class: "num" }, fmt(r.total[key])), h("td", { class: "num" }, fmt(r.used[key])),
      h("td", { class: "num" }, fmt(r.offered[key])), h("td", { class: "num" }, fmt(r.idle[key])),
      h("td", { style: "width:30%" }, stackedBar(r.total[key], r.used[key], r.offered[key])));
    body.replaceChildren(
      h("div", { class: "grid cards" },
        card("Leader", c.leader_id === null || c.leader_id === undefined ? "none" : `master ${c.leader_id}`),
        card("Version", c.version),
        card("Uptime", duration(c.uptime_seconds)),
        card("Agents", String(c.agents.reachable), c.agents.unreachable ? `reachable, ${c.agents.unreachable} unreachable` : `of ${c.agents.total}`),
        card("Frameworks", String(c.frameworks.active), "active"),
        card("Tasks", String(taskTotal), "live")),
      h("div", { class: "grid two" },
        h("section", { class: "panel" }, h("h2", {}, "Resources"),
          h("div", { class: "table-wrap" }, h("table", {},
            h("thead", {}, h("tr", {}, ["", "Total", "Used", "Offered", "Idle", ""].map((t, i) => h("th", { class: i && i < 5 ? "num" : null }, t)))),
            h("tbody", {}, res("CPUs", cpus, "millicpus"), res("Memory", mem, "mem_mb"), res("Disk", mem, "disk_mb")))),
          h("div", { class: "legend" }, h("span", {}, h("i", { style: "background:var(--used)" }), "used"),
            h("span", {}, h("i", { style: "background:var(--offered)" }), "offered"),
            h("span", {}, h("i", { style: "background:var(--idle)" }), "idle"))),
        h("section", { class: "panel chart" }, h("h2", {}, "Use over the last hour"),
          usageChart(usage.samples || []),
          h("div", { class: "legend" }, h("span", {}, h("i", { style: "background:var(--used)" }), "CPU in use"),
            h("span", {}, h("i", { style: "background:var(--offered)" }), "memory in use")))),
      h("div", { class: "grid two", style: "margin-top:16px" },
        h("section", { class: "panel" }, h("h2", {}, "Tasks by state"),
          taskTotal ? h("div", { class: "chips" }, Object.entries(c.tasks).map(([s, n]) =>
            link(href("/tasks", { state: s }), h("span", {}, pill(`${s} ${n}`, s))))) : h("p", { class: "muted" }, "No live tasks. ",
            link(href("/tasks", { completed: 1 }), "See ended tasks."))),
        h("section", { class: "panel" }, h("h2", {}, "Active frameworks"),
          table([
            { title: "Name", cell: (f) => h("span", {}, link(`#/frameworks/${enc(f.id)}`, f.name || f.id),
              f.waiting ? h("div", { class: "error-text waiting" }, f.waiting) : null) },
            { title: "Role", cell: (f) => f.role },
            { title: "Tasks", num: true, cell: (f) => String(f.active_tasks) },
            { title: "Finished", num: true, cell: (f) => f.tasks_total ? `${f.tasks_finished}/${f.tasks_total}` : String(f.tasks_finished) },
            { title: "CPUs", num: true, cell: (f) => cpus(f.used.millicpus) },
          ], fws.frameworks.slice(0, 10), "No framework is registered."))));
  };
};

// ---- agents --------------------------------------------------------------------------------

pages.agents = (main, rest, params) => {
  if (rest[0]) return agentPage(main, rest[0]);
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Agents"), body);
  const cols = [
    { title: "Host", sortKey: "host", value: (a) => a.hostname, cell: (a) => link(`#/agents/${enc(a.id)}`, a.hostname || a.id) },
    { title: "Id", cell: (a) => h("span", { class: "mono", title: a.id }, short(a.id)) },
    { title: "Address", cell: (a) => h("span", { class: "mono" }, a.address) },
    { title: "State", sortKey: "state", value: (a) => (a.reachable ? 0 : 1), cell: (a) => a.unhealthy_reason ? pill("unhealthy", "bad") : a.reachable ? pill("reachable", "ok") : pill("unreachable") },
    { title: "CPUs used", num: true, sortKey: "cpu", value: (a) => a.used.millicpus, cell: (a) => `${cpus(a.used.millicpus)} / ${cpus(a.resources.millicpus)}` },
    { title: "Memory used", num: true, sortKey: "mem", value: (a) => a.used.mem_mb, cell: (a) => `${mem(a.used.mem_mb)} / ${mem(a.resources.mem_mb)}` },
    { title: "Tasks", num: true, sortKey: "tasks", value: (a) => a.active_tasks, cell: (a) => String(a.active_tasks) },
  ];
  // The server orders and pages (a cluster may have 50,000 agents): the headers only set
  // `sort` in the URL, which is passed on.
  sortable(cols, params, "/agents");
  const offset = Number(params.get("offset") || 0);
  const query = new URLSearchParams({ limit: PAGE, offset });
  if (params.get("sort")) query.set("sort", params.get("sort"));
  return async () => {
    const page = await api(`/agents?${query}`);
    body.replaceChildren(h("section", { class: "panel" },
      h("p", { class: "muted" }, `${page.total} agent${page.total === 1 ? "" : "s"}`),
      table(cols, page.agents, "No agent has registered. Start one with: wasmos agent --master ADDR"),
      pager(offset, page.agents.length, page.next_offset, (o) => { location.hash = href("/agents", { ...Object.fromEntries(params), offset: o }); })));
  };
};

function agentPage(main, id) {
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Agent ", h("span", { class: "sub" }, id)), body);
  return async () => {
    const [a, tasks] = await Promise.all([
      api(`/agents/${enc(id)}`).catch((e) => { if (e.status === 404) return null; throw e; }),
      api(`/tasks?agent=${enc(id)}&limit=${PAGE}`)]);
    if (!a) {
      body.replaceChildren(h("p", { class: "panel" }, "This master knows no agent with that id (it may have been removed). ", link("#/agents", "All agents.")));
      return;
    }
    body.replaceChildren(
      h("div", { class: "grid two" },
        h("section", { class: "panel" }, h("h2", {}, a.hostname),
          kv([["State", a.reachable ? pill("reachable", "ok") : pill("unreachable")],
            ["Address", h("span", { class: "mono" }, a.address)],
            ["Health", a.unhealthy_reason ? h("span", { class: "error-text" }, a.unhealthy_reason) : "healthy"],
            ["Isolation", a.isolation.length ? a.isolation.join(", ") : "Wasm only"],
            ["Attributes", Object.keys(a.attributes).length ? Object.entries(a.attributes).map(([k, v]) => `${k}=${v}`).join(", ") : "none"]])),
        h("section", { class: "panel" }, h("h2", {}, "Resources"),
          kv([["CPUs", h("span", {}, `${cpus(a.used.millicpus)} used of ${cpus(a.resources.millicpus)}`, stackedBar(a.resources.millicpus, a.used.millicpus, 0))],
            ["Memory", h("span", {}, `${mem(a.used.mem_mb)} used of ${mem(a.resources.mem_mb)}`, stackedBar(a.resources.mem_mb, a.used.mem_mb, 0))],
            ["Disk", h("span", {}, `${mem(a.used.disk_mb)} used of ${mem(a.resources.disk_mb)}`, stackedBar(a.resources.disk_mb, a.used.disk_mb, 0))]]))),
      h("section", { class: "panel", style: "margin-top:16px" }, h("h2", {}, `Live tasks (${a.active_tasks})`),
        taskTable(tasks.tasks, "No live task on this agent."),
        tasks.next_offset ? link(href("/tasks", { agent: id }), "All of this agent's tasks") : null));
  };
}

// ---- frameworks ----------------------------------------------------------------------------

pages.frameworks = (main, rest) => {
  if (rest[0]) return frameworkPage(main, rest[0]);
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Frameworks"), body);
  return async () => {
    const fws = await api("/frameworks?completed=true");
    body.replaceChildren(
      h("section", { class: "panel" }, h("h2", {}, `Active (${fws.frameworks.length})`),
        table([
          { title: "Name", cell: (f) => h("span", {}, link(`#/frameworks/${enc(f.id)}`, f.name || "(no name)"),
            f.waiting ? h("div", { class: "error-text waiting" }, f.waiting) : null) },
          { title: "Id", cell: (f) => h("span", { class: "mono", title: f.id }, short(f.id)) },
          { title: "Role", cell: (f) => f.role },
          { title: "Principal", cell: (f) => f.principal || "–" },
          { title: "Scheduler", cell: (f) => f.connected ? pill(f.hosted ? "hosted" : "connected", "ok") : pill("disconnected", "warn") },
          { title: "Live tasks", num: true, cell: (f) => String(f.active_tasks) },
          { title: "Finished", num: true, cell: (f) => f.tasks_total ? `${f.tasks_finished}/${f.tasks_total}` : String(f.tasks_finished) },
          { title: "Failed", num: true, cell: (f) => String(f.tasks_failed) },
          { title: "CPUs", num: true, cell: (f) => cpus(f.used.millicpus) },
          { title: "Memory", num: true, cell: (f) => mem(f.used.mem_mb) },
        ], fws.frameworks, "No framework is registered. Submit one with: wasmos submit FRAMEWORK.wasm")),
      h("section", { class: "panel" }, h("h2", {}, `Completed (${(fws.completed || []).length})`),
        table([
          { title: "Name", cell: (f) => link(`#/frameworks/${enc(f.id)}`, f.name || "(no name)") },
          { title: "Id", cell: (f) => h("span", { class: "mono", title: f.id }, short(f.id)) },
          { title: "Outcome", cell: (f) => pill(f.end.replace("_", " "), f.end) },
          { title: "Result", cls: "msg", cell: (f) => f.text.length > 160 ? f.text.slice(0, 160) + "…" : f.text },
          { title: "Finished", num: true, cell: (f) => String(f.tasks_finished) },
          { title: "Failed", num: true, cell: (f) => String(f.tasks_failed) },
          { title: "Ended", cell: (f) => when(f.ended_unix_ms) },
        ], fws.completed || [], "No framework has ended since this master became leader.")));
  };
};

function frameworkPage(main, id) {
  const body = h("div");
  const logBox = h("pre", { class: "log", "aria-label": "Scheduler log" }, "");
  main.replaceChildren(h("h1", {}, "Framework ", h("span", { class: "sub" }, id)), body);
  let logAfter = 0, logLines = [];
  return async () => {
    const fws = await api("/frameworks?completed=true");
    const live = fws.frameworks.find((f) => f.id === id);
    const done = (fws.completed || []).find((f) => f.id === id);
    if (!live && !done) {
      body.replaceChildren(h("p", { class: "panel" }, "No framework with that id is registered or in this master's history (the history keeps the last ones ended since it became leader). ", link("#/frameworks", "All frameworks.")));
      return;
    }
    const [liveTasks, endedTasks, result, stored, log] = await Promise.all([
      live ? api(`/tasks?framework=${enc(id)}&limit=${PAGE}`) : Promise.resolve({ tasks: [] }),
      api(`/tasks?framework=${enc(id)}&completed=true&limit=${PAGE}`),
      done ? api(`/frameworks/${enc(id)}/result`).catch(() => null) : Promise.resolve(null),
      api(`/frameworks/${enc(id)}/state`).catch(() => null),
      api(`/frameworks/${enc(id)}/log?after=${logAfter}&tail=500`).catch(() => null),
    ]);
    if (log && Array.isArray(log.lines)) {
      for (const l of log.lines) {
        logLines.push(`${new Date(l.unix_ms).toISOString().slice(11, 23)} ${l.level.padEnd(5)} ${l.message}`);
        logAfter = Math.max(logAfter, l.seq);
      }
      if (logLines.length > 2000) logLines = logLines.slice(-2000);
      const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
      logBox.textContent = logLines.length ? logLines.join("\n") : "(the scheduler has written no log line)";
      if (atEnd) logBox.scrollTop = logBox.scrollHeight;
    } else {
      logBox.textContent = "(no scheduler log: the master does not host this framework's scheduler, or keeps no log for it)";
    }
    const f = live || done;
    const summary = kv([
      ["Name", f.name || "(no name)"],
      ["State", live ? pill("active") : pill(done.end.replace("_", " "), done.end)],
      ["Role", f.role],
      ["Principal", f.principal || "–"],
      live && ["Scheduler", live.connected ? (live.hosted ? "hosted by the master" : "connected") : "disconnected"],
      done && ["Registered", when(done.registered_unix_ms)],
      done && ["Ended", when(done.ended_unix_ms)],
      ["Tasks", `${live ? live.active_tasks + " live, " : ""}${f.tasks_finished}${live && live.tasks_total ? "/" + live.tasks_total : ""} finished, ${f.tasks_failed} failed`],
      live && ["Allocated", `${cpus(live.allocated.millicpus)} CPUs, ${mem(live.allocated.mem_mb)}`],
      live && ["Offers", String(live.offers)],
      live && live.waiting && ["Waiting", h("span", { class: "error-text" }, live.waiting)],
    ]);
    const resultBox = result && result.ended
      ? h("section", { class: "panel" }, h("h2", {}, result.succeeded ? "Result" : "Why it failed"), h("pre", { class: "value" }, result.result || "(empty)"))
      : done ? h("section", { class: "panel" }, h("h2", {}, "Outcome"), h("pre", { class: "value" }, done.text || "(empty)")) : null;
    const entries = stored && stored.entries ? stored.entries : [];
    body.replaceChildren(
      h("div", { class: "grid two" }, h("section", { class: "panel" }, h("h2", {}, "Summary"), summary), resultBox ||
        h("section", { class: "panel" }, h("h2", {}, "Result"), h("p", { class: "muted" }, "Not ended yet."))),
      // (replaceChildren would show a null as the text "null".)
      live ? h("section", { class: "panel", style: "margin-top:16px" }, h("h2", {}, "Live tasks"), taskTable(liveTasks.tasks, "No live task."),
        liveTasks.next_offset ? link(href("/tasks", { framework: id }), "All live tasks") : null) : "",
      h("section", { class: "panel", style: "margin-top:16px" }, h("h2", {}, "Ended tasks"), taskTable(endedTasks.tasks, "No ended task in the history."),
        endedTasks.next_offset ? link(href("/tasks", { framework: id, completed: 1 }), "All ended tasks") : null),
      h("section", { class: "panel" }, h("h2", {}, "Stored state"),
        entries.length ? table([
          { title: "Key", cell: (e) => h("span", { class: "mono" }, e.key) },
          { title: "Value", cell: (e) => h("pre", { class: "value" }, e.value !== null && e.value !== undefined ? e.value : "0x" + e.value_hex) },
        ], entries) : h("p", { class: "muted" }, stored ? "Nothing stored." : "No stored state this token may read.")),
      h("section", { class: "panel" }, h("h2", {}, "Scheduler log"), logBox));
  };
}

// ---- tasks ---------------------------------------------------------------------------------

function taskTable(tasks, emptyText, sort) {
  const cols = [
    { title: "Task", sortKey: "id", value: (t) => t.id, cell: (t) => link(`#/tasks/${enc(t.framework_id)}/${enc(t.id)}`, t.name && t.name !== t.id ? `${t.id} (${t.name})` : t.id, { class: "mono" }) },
    { title: "State", sortKey: "state", value: (t) => t.state, cell: (t) => pill(t.state) },
    { title: "Framework", cell: (t) => idLink(`#/frameworks/${enc(t.framework_id)}`, t.framework_id) },
    { title: "Agent", cell: (t) => t.agent_id ? idLink(`#/agents/${enc(t.agent_id)}`, t.agent_id) : "–" },
    { title: "Message", cls: "msg", cell: (t) => t.message },
    tasks.some((t) => t.ended_unix_ms)
      ? { title: "Ended", sortKey: "ended", value: (t) => t.ended_unix_ms || 0, cell: (t) => when(t.ended_unix_ms) }
      : { title: "Resources", cell: (t) => t.resources ? `${cpus(t.resources.millicpus)} CPU, ${mem(t.resources.mem_mb)}` : "–" },
  ];
  const rows = sort ? sort(cols)(tasks) : tasks;
  return table(cols, rows, emptyText);
}

pages.tasks = (main, rest, params) => {
  if (rest.length >= 2) return taskPage(main, rest[0], rest[1]);
  const p = Object.fromEntries(params);
  const go = (changes) => { location.hash = href("/tasks", { ...p, offset: 0, ...changes }); };
  const field = (name, label, el) => h("label", {}, label, el);
  const text = (name, placeholder) => {
    const i = h("input", { name, value: p[name] || "", placeholder, size: 22 });
    i.addEventListener("change", () => go({ [name]: i.value.trim() }));
    return i;
  };
  const stateSel = h("select", { name: "state", onchange: (e) => go({ state: e.target.value }) },
    h("option", { value: "" }, "any"), taskStates.map((s) => h("option", { value: s, selected: p.state === s }, s)));
  const completed = h("select", { name: "completed", onchange: (e) => go({ completed: e.target.value }) },
    h("option", { value: "" }, "live"), h("option", { value: "1", selected: !!p.completed }, "ended (history)"));
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Tasks"),
    h("form", { class: "toolbar", role: "search", onsubmit: (e) => e.preventDefault() },
      field("completed", "Which", completed), field("state", "State", stateSel),
      field("framework", "Framework id", text("framework", "any")), field("agent", "Agent id", text("agent", "any"))),
    body);
  const offset = Number(p.offset || 0);
  const query = new URLSearchParams({ limit: PAGE, offset });
  for (const k of ["state", "framework", "agent"]) if (p[k]) query.set(k, p[k]);
  if (p.completed) query.set("completed", "true");
  return async () => {
    const page = await api(`/tasks?${query}`);
    const sort = (cols) => {
      const s = sortable(cols, params, "/tasks");
      return s;
    };
    body.replaceChildren(h("section", { class: "panel" },
      taskTable(page.tasks, p.completed ? "No ended task matches." : "No live task matches.", sort),
      pager(offset, page.tasks.length, page.next_offset, (o) => go({ offset: o }))));
  };
};

function taskPage(main, fw, id) {
  const body = h("div");
  const out = { stdout: "", stderr: "" }, next = { stdout: 0, stderr: 0 };
  let stream = "stdout", info = null;
  const logBox = h("pre", { class: "log", "aria-label": "Task output", tabindex: 0 });
  const tabs = h("div", { class: "tabs", role: "tablist" });
  const drawTabs = () => tabs.replaceChildren(...["stdout", "stderr"].map((s) =>
    h("button", { type: "button", role: "tab", "aria-selected": String(s === stream), onclick: () => { stream = s; drawTabs(); drawLog(); } }, s)));
  const drawLog = () => {
    const atEnd = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
    logBox.textContent = out[stream] || (info ? info : "(nothing written)");
    if (atEnd) logBox.scrollTop = logBox.scrollHeight;
  };
  drawTabs();
  main.replaceChildren(h("h1", {}, "Task ", h("span", { class: "sub" }, id)), body,
    h("section", { class: "panel", style: "margin-top:16px" }, h("h2", {}, "Output"), tabs, logBox));
  let ended = false;
  const readLog = async (s) => {
    // First read: the last 200 lines; then what was appended.
    const q = next[s] ? `offset=${next[s]}` : "tail=200";
    const r = await api(`/tasks/${enc(id)}/log?framework=${enc(fw)}&stream=${s}&${q}`);
    if (r.data) out[s] = (out[s] + r.data).slice(-1_000_000);
    next[s] = r.next_offset;
    return r;
  };
  return async () => {
    const t = await api(`/tasks/${enc(id)}?framework=${enc(fw)}`).catch((x) => {
      if (x instanceof ApiError && x.status === 404) return null;
      throw x;
    });
    if (t) {
      body.replaceChildren(h("section", { class: "panel" }, kv([
        ["State", pill(t.state)], ["Name", t.name || "–"],
        ["Framework", link(`#/frameworks/${enc(t.framework_id)}`, t.framework_id, { class: "mono" })],
        ["Agent", t.agent_id ? link(`#/agents/${enc(t.agent_id)}`, t.agent_id, { class: "mono" }) : "–"],
        ["Message", t.message || "–"],
        t.resources && ["Resources", `${cpus(t.resources.millicpus)} CPU, ${mem(t.resources.mem_mb)}`],
        t.launched_unix_ms && ["Launched", when(t.launched_unix_ms)],
        t.ended_unix_ms && ["Ended", when(t.ended_unix_ms)],
        t.result_bytes !== undefined && ["Result", `${t.result_bytes} bytes`],
      ])));
    } else if (!ended) {
      body.replaceChildren(h("p", { class: "panel" }, "This master knows no such task (ended tasks are kept in its history for a while)."));
    }
    if (ended) return;
    try {
      const [a, b] = await Promise.all([readLog("stdout"), readLog("stderr")]);
      info = null;
      ended = a.task_ended && b.task_ended && !a.data && !b.data;
    } catch (x) {
      if (x instanceof ApiError && x.status === 401) throw x;
      info = `(output not readable: ${x.message})`;
    }
    drawLog();
  };
}

// ---- roles and masters ---------------------------------------------------------------------

pages.roles = (main) => {
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Roles"), body);
  return async () => {
    const roles = await api("/roles");
    const maxShare = Math.max(0.0001, ...roles.map((r) => r.dominant_share));
    body.replaceChildren(h("section", { class: "panel" },
      h("p", { class: "muted" }, "Dominant Resource Fairness offers next to the role with the lowest weighted share."),
      table([
        { title: "Role", cell: (r) => h("strong", {}, r.role) },
        { title: "Weight", num: true, cell: (r) => String(r.weight) },
        { title: "Guarantee", cell: (r) => `${cpus(r.guarantee.millicpus)} CPU, ${mem(r.guarantee.mem_mb)}` },
        { title: "Limit", cell: (r) => r.limit ? `${cpus(r.limit.millicpus)} CPU, ${mem(r.limit.mem_mb)}` : "none" },
        { title: "Allocated", cell: (r) => `${cpus(r.allocated.millicpus)} CPU, ${mem(r.allocated.mem_mb)}` },
        { title: "Offered", cell: (r) => `${cpus(r.offered.millicpus)} CPU, ${mem(r.offered.mem_mb)}` },
        { title: "Dominant share", cell: (r) => h("div", { style: "display:flex;gap:8px;align-items:center" },
          h("div", { class: "bar", style: "flex:1", role: "img", "aria-label": `${(r.dominant_share * 100).toFixed(1)}%` },
            h("span", { class: "used", style: `width:${(r.dominant_share / Math.max(maxShare, 1)) * 100}%` })),
          h("span", { class: "mono" }, `${(r.dominant_share * 100).toFixed(1)}%`)) },
        { title: "Weighted", num: true, cell: (r) => r.weighted_share.toFixed(3) },
      ], roles, "No role has weights, quotas or frameworks yet.")));
  };
};

pages.raft = (main) => {
  const body = h("div");
  main.replaceChildren(h("h1", {}, "Masters"), body);
  return async () => {
    const r = await api("/raft");
    if (!r.replicated) {
      body.replaceChildren(h("section", { class: "panel" }, h("p", {}, "This master keeps its registry in memory (no Raft group): it is the only master.")));
      return;
    }
    body.replaceChildren(h("section", { class: "panel" },
      kv([["This master", `master ${r.id}`], ["Leader", r.leader_id ? `master ${r.leader_id}` : "none (an election is under way)"],
        ["Term", String(r.term)], ["Last applied index", r.last_applied_index === null ? "–" : String(r.last_applied_index)]])),
    h("section", { class: "panel" }, h("h2", {}, "Members"), table([
      { title: "Id", num: true, cell: (m) => String(m.id) },
      { title: "Address", cell: (m) => h("span", { class: "mono" }, m.address) },
      { title: "Vote", cell: (m) => m.voter ? "voter" : "learner" },
      { title: "Role", cell: (m) => m.id === r.leader_id ? pill("leader") : pill("follower", "active") },
    ], r.members)));
  };
};

// ---- start ---------------------------------------------------------------------------------

window.addEventListener("hashchange", () => { render(); document.getElementById("main").focus({ preventScroll: true }); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) render(); });
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("Signed out.");
  });
  render();
});
