// Tollgate console: the management APIs in a page. Everything here goes through the same
// rate-limited endpoints a script would call, with the token in the Authorization header; the
// token lives in this tab's session storage only. Untrusted text is only ever set with
// textContent (no HTML is ever parsed from data), and there is no inline script or style
// (strict CSP).
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") node.textContent = v;
    else if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
};

// --- Errors: JavaScript errors are shown in the page (and fail the browser tests). ---------
function showJsError(message) {
  const box = $("js-errors");
  box.hidden = false;
  box.textContent = `Console error: ${message}`;
}
window.addEventListener("error", (e) => showJsError(e.message));
window.addEventListener("unhandledrejection", (e) => {
  if (e.reason instanceof ApiFailure || e.reason instanceof NetworkFailure) return;
  showJsError(String(e.reason && e.reason.message ? e.reason.message : e.reason));
});

class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  // The field a validation message names ("ip_whitelist: ..."), if any.
  get field() {
    const m = /^([a-z_]+)(?:\[\d+\])?: /.exec(this.message);
    return m ? m[1] : null;
  }
}
class NetworkFailure extends Error {}

function banner(text, retry) {
  $("banner").hidden = false;
  $("banner-text").textContent = text;
  const button = $("banner-retry");
  button.hidden = !retry;
  button.onclick = retry ? () => { clearBanner(); retry(); } : null;
}
function clearBanner() {
  $("banner").hidden = true;
}

// --- The API. ------------------------------------------------------------------------------
const session = {
  get token() { return sessionStorage.getItem("tollgate.token"); },
  get role() { return sessionStorage.getItem("tollgate.role"); },
  set(token, role) {
    sessionStorage.setItem("tollgate.token", token);
    sessionStorage.setItem("tollgate.role", role);
  },
  clear() { sessionStorage.removeItem("tollgate.token"); sessionStorage.removeItem("tollgate.role"); },
};

async function api(method, path, body, token = session.token) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new NetworkFailure(`cannot reach the gateway (${err.message})`);
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) {
    const message = (json && (json.detail || json.msg)) || text || resp.statusText;
    throw new ApiFailure(resp.status, message);
  }
  return json;
}

// Runs an action; a network failure shows a retry banner, an API failure is handed to
// `onFailure` (default: the banner).
async function run(action, onFailure) {
  try {
    clearBanner();
    return await action();
  } catch (err) {
    if (err instanceof NetworkFailure) banner(`${err.message}.`, () => run(action, onFailure));
    else if (err instanceof ApiFailure) (onFailure || ((e) => banner(`${e.status}: ${e.message}`)))(err);
    else throw err;
  }
}

// Shows an API failure next to the field it names in `form` (or in the form's general slot).
function formError(form, err) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
  const slot = form.querySelector(`.field-error[data-for="${err.field}"]`) || form.querySelector('.field-error[data-for="*"]');
  if (slot) slot.textContent = `${err.message} (${err.status})`;
  else banner(`${err.status}: ${err.message}`);
}
function clearFormErrors(form) {
  for (const p of form.querySelectorAll(".field-error")) p.textContent = "";
}

const usd = (v) => (v === null || v === undefined ? "—" : `$${Number(v).toFixed(v !== 0 && Math.abs(v) < 0.01 ? 6 : 2)}`);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "never");
const bytes = (n) => {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
};

// --- Sign-in. -------------------------------------------------------------------------------
async function signIn(token, role) {
  const check = role === "partner" ? "/api/v1/reseller/me" : "/api/v1/admin/partners?limit=1";
  await api("GET", check, undefined, token);
  session.set(token, role);
  await show();
}

function setupSignIn() {
  const form = $("signin-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearFormErrors(form);
    const token = form.token.value.trim();
    const role = form.role.value;
    run(() => signIn(token, role), (err) => {
      const why = err.status === 401 ? "That token was not accepted" : "Signing in failed";
      form.querySelector('[data-for="token"]').textContent = `${why} (${err.status}: ${err.message}).`;
    });
  });
  $("sign-out").addEventListener("click", () => {
    session.clear();
    stopLive();
    forgetPartnerPage();
    show();
  });
}

// A one-time link from `tollgate demo`: /console/#login=<code>. The code is exchanged once for
// the partner token and the fragment is dropped from the address bar.
async function redeemLink() {
  const m = /^#login=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, "", location.pathname);
  await run(async () => {
    const { token } = await api("POST", "/api/v1/console/login", { code: m[1] }, null);
    forgetPartnerPage();
    session.set(token, "partner");
  }, (err) => {
    linkFailure = `This sign-in link does not work any more (${err.status}: ${err.message}). Sign in with your token.`;
  });
}
let linkFailure = null;

async function show() {
  const role = session.token ? session.role : null;
  $("signin").hidden = role !== null;
  $("partner").hidden = role !== "partner";
  $("operator").hidden = role !== "operator";
  $("nav").hidden = role === null;
  if (role === "partner") await run(loadPartner);
  if (role === "operator") await run(loadOperator);
  if (linkFailure) {
    banner(linkFailure);
    linkFailure = null;
  }
}

// --- Partner view. ----------------------------------------------------------------------------
const partnerState = { range: "7d", cursors: [null], page: [], chart: null };

// Forgets everything the previous partner's session showed: secrets on screen, the page
// position, the chart.
function forgetPartnerPage() {
  for (const [box, text] of [["secret-box", "secret"], ["rotated-box", "rotated"]]) {
    $(text).textContent = "";
    $(box).hidden = true;
  }
  $("edit").hidden = true;
  editing = null;
  partnerState.cursors = [null];
  partnerState.page = [];
  if (partnerState.chart) partnerState.chart.destroy();
  partnerState.chart = null;
}

// Copies `text`; where the browser offers no clipboard (plain HTTP off localhost), selects it
// for a manual copy instead.
function copy(node) {
  if (navigator.clipboard) {
    navigator.clipboard.writeText(node.textContent).catch(() => selectText(node));
  } else {
    selectText(node);
    banner("This page cannot use the clipboard here: the text is selected, copy it with Ctrl+C.");
  }
}
function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

async function loadPartner() {
  const [me, balance] = await Promise.all([api("GET", "/api/v1/reseller/me"), api("GET", "/api/v1/reseller/balance")]);
  $("who").textContent = `${me.data.name} (partner${me.data.status === "suspended" ? ", suspended" : ""})`;
  $("balance").textContent = usd(balance.data.balance_usd);
  $("spent-today").textContent = usd(balance.data.spent_today_usd);
  $("spent-total").textContent = usd(balance.data.spent_total_usd);
  $("tier").textContent = `${me.data.tier || "—"} ×${me.data.tier_multiplier}`;
  await Promise.all([loadSpend(), loadKeys(), loadAccounts(null)]);
}

async function loadSpend() {
  const usage = await api("GET", `/api/v1/reseller/usage?range=${partnerState.range}`);
  const days = usage.data;
  const xs = days.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000);
  const ys = days.map((d) => d.cost_usd);
  $("chart-today").textContent = usd(ys[ys.length - 1] || 0);
  const box = $("chart");
  const opts = {
    width: Math.max(300, box.clientWidth || 800),
    height: 240,
    series: [{}, { label: "Spend (USD)", stroke: "#2456d6", fill: "rgba(36, 86, 214, 0.12)", value: (u, v) => usd(v) }],
    axes: [{}, { values: (u, vals) => vals.map((v) => `$${v}`) }],
    scales: { x: { time: true } },
  };
  if (partnerState.chart) partnerState.chart.destroy();
  partnerState.chart = new uPlot(opts, [xs, ys], box);
}

function keyStatus(k) {
  if (k.revoked) return "revoked";
  return k.disabled ? "disabled" : "active";
}

function keyLimits(k) {
  const parts = [];
  if (k.daily_cost_limit_usd != null) parts.push(`${usd(k.daily_cost_limit_usd)}/day`);
  if (k.total_cost_limit_usd != null) parts.push(`${usd(k.total_cost_limit_usd)} total`);
  if (k.rate_limit_per_minute != null) parts.push(`${k.rate_limit_per_minute}/min`);
  if (k.concurrency_limit != null) parts.push(`${k.concurrency_limit} at once`);
  return parts.join(", ") || "none";
}

async function loadKeys() {
  const cursor = partnerState.cursors[partnerState.cursors.length - 1];
  const params = new URLSearchParams({ limit: "20" });
  if (cursor) params.set("cursor", cursor);
  const search = $("key-search").value.trim();
  if (search) params.set("q", search);
  const page = await api("GET", `/api/v1/reseller/keys?${params}`);
  partnerState.page = page.data;
  partnerState.next = page.next_cursor;
  $("keys-next").disabled = !page.next_cursor;
  $("keys-first").disabled = partnerState.cursors.length === 1;
  renderKeys();
}

function renderKeys() {
  const searching = $("key-search").value.trim() !== "";
  const body = $("keys-body");
  body.replaceChildren();
  const keys = partnerState.page;
  for (const k of keys) {
    const status = keyStatus(k);
    const actions = el("td", { class: "row" });
    if (status !== "revoked") {
      actions.append(
        el("button", { type: "button", text: k.disabled ? "Enable" : "Disable", "data-action": k.disabled ? "enable" : "disable", onclick: () => keyAction(k, k.disabled ? "enable" : "disable") }),
        el("button", { type: "button", text: "Edit", "data-action": "edit", onclick: () => openEdit(k) }),
        el("button", { type: "button", class: "danger", text: "Revoke", "data-action": "revoke", onclick: () => {
          if (confirm(`Revoke ${k.name} for good? It stops working at once and cannot be enabled again.`)) keyAction(k, "revoke");
        } }),
      );
    }
    body.append(el("tr", { "data-key": k.id, "data-label": k.label || "" },
      el("td", {}, el("span", { text: k.label || k.name }), el("span", { class: "sub", text: `${k.name} · ${k.id}` })),
      el("td", {}, el("span", { class: `status ${status}`, text: status, "data-testid": "status" })),
      el("td", { text: keyLimits(k) }),
      el("td", { text: usd(k.cost_today_usd) }),
      el("td", { text: usd(k.cost_total_usd) }),
      el("td", { text: when(k.last_used_at) }),
      actions,
    ));
  }
  if (!keys.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: searching ? "No key matches." : "No keys yet." })));
}

async function keyAction(k, action) {
  await run(async () => {
    await api("POST", `/api/v1/reseller/keys/${k.id}/${action}`);
    await loadKeys();
  });
}

function setupKeys() {
  // The search runs on the server over every key (`?q=`), a moment after typing stops.
  let typing = null;
  $("key-search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      partnerState.cursors = [null];
      run(loadKeys);
    }, 250);
  });
  $("keys-next").addEventListener("click", () => {
    partnerState.cursors.push(partnerState.next);
    run(loadKeys);
  });
  $("keys-first").addEventListener("click", () => {
    partnerState.cursors = [null];
    run(loadKeys);
  });
  for (const b of document.querySelectorAll("button.range")) {
    b.addEventListener("click", () => {
      partnerState.range = b.dataset.range;
      for (const o of document.querySelectorAll("button.range")) o.setAttribute("aria-pressed", String(o === b));
      run(loadSpend);
    });
  }
  $("refresh").addEventListener("click", () => run(loadPartner));

  const create = $("create-form");
  create.addEventListener("submit", (e) => {
    e.preventDefault();
    clearFormErrors(create);
    const body = {};
    for (const name of ["label", "description"]) if (create[name].value.trim()) body[name] = create[name].value.trim();
    for (const name of ["daily_cost_limit_usd", "total_cost_limit_usd"]) {
      if (create[name].value.trim()) body[name] = Number(create[name].value);
    }
    run(async () => {
      const created = await api("POST", "/api/v1/reseller/keys", body);
      $("secret").textContent = created.data.api_key;
      $("secret-box").hidden = false;
      create.reset();
      await loadKeys();
    }, (err) => formError(create, err));
  });
  $("copy-secret").addEventListener("click", () => copy($("secret")));
  $("hide-secret").addEventListener("click", () => {
    $("secret").textContent = "";
    $("secret-box").hidden = true;
  });
  setupEdit();
}

// The fields of the edit form that differ from key `k`, as the PATCH body: a field left as it
// was is not sent (so a key whose expiry is past can still be relabelled), and permissions the
// form does not show (`admin`) are kept.
function changedFields(form, k) {
  const body = {};
  const text = (name) => form[name].value.trim();
  for (const name of ["label", "description"]) if (text(name) !== (k[name] || "")) body[name] = text(name);
  for (const name of ["daily_cost_limit_usd", "total_cost_limit_usd", "rate_limit_per_minute", "concurrency_limit"]) {
    const raw = text(name);
    const was = k[name] == null ? "" : String(k[name]);
    // What the user typed, as typed when it is not a number: the API names what is wrong.
    if (raw !== was && raw !== "") body[name] = Number.isNaN(Number(raw)) ? raw : Number(raw);
  }
  const ips = text("ip_whitelist").split(/[\s,]+/).filter(Boolean);
  if (ips.join(",") !== (k.ip_whitelist || []).join(",")) body.ip_whitelist = ips;
  if ((form.expiration_date.value || null) !== (k.expiration_date || null)) body.expiration_date = form.expiration_date.value || null;
  const models = text("models") ? text("models").split(",").map((m) => m.trim()).filter(Boolean) : null;
  if (JSON.stringify(models) !== JSON.stringify(k.models || null)) body.models = models;
  const shown = [...form.querySelectorAll('input[name="perm"]')].map((b) => b.value);
  const checked = [...form.querySelectorAll('input[name="perm"]:checked')].map((b) => b.value);
  const permissions = [...k.permissions.filter((p) => !shown.includes(p)), ...checked];
  if ([...permissions].sort().join() !== [...k.permissions].sort().join()) body.permissions = permissions;
  return body;
}

let editing = null;
function openEdit(k) {
  editing = k;
  const form = $("edit-form");
  clearFormErrors(form);
  $("edit-name").textContent = k.label || k.name;
  form.label.value = k.label || "";
  form.description.value = k.description || "";
  form.daily_cost_limit_usd.value = k.daily_cost_limit_usd ?? "";
  form.total_cost_limit_usd.value = k.total_cost_limit_usd ?? "";
  form.rate_limit_per_minute.value = k.rate_limit_per_minute ?? "";
  form.concurrency_limit.value = k.concurrency_limit ?? "";
  form.ip_whitelist.value = (k.ip_whitelist || []).join("\n");
  form.expiration_date.value = k.expiration_date || "";
  form.models.value = (k.models || []).join(", ");
  for (const box of form.querySelectorAll('input[name="perm"]')) box.checked = k.permissions.includes(box.value);
  $("edit").hidden = false;
  form.label.focus();
}

function setupEdit() {
  const form = $("edit-form");
  $("edit-cancel").addEventListener("click", () => { $("edit").hidden = true; editing = null; });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    clearFormErrors(form);
    const body = changedFields(form, editing);
    if (!Object.keys(body).length) {
      $("edit").hidden = true;
      return;
    }
    run(async () => {
      await api("PATCH", `/api/v1/reseller/keys/${editing.id}`, body);
      $("edit").hidden = true;
      editing = null;
      await loadKeys();
    }, (err) => formError(form, err));
  });
}

async function loadAccounts(cursor) {
  const query = cursor ? `?limit=20&cursor=${encodeURIComponent(cursor)}` : "?limit=20";
  const page = await api("GET", `/api/v1/reseller/accounts${query}`);
  const body = $("accounts-body");
  body.replaceChildren();
  for (const a of page.data) {
    const s = a.usage;
    const bar = (used, limit, fmt) => el("td", { class: "bar" },
      limit ? el("meter", { min: "0", max: String(limit), value: String(used) }) : el("span", { text: "no limit" }),
      el("span", { text: `${fmt(used)} of ${limit ? fmt(limit) : "∞"}` }));
    body.append(el("tr", {},
      el("td", {}, el("span", { text: a.name || a.uuid }), el("span", { class: "sub", text: `${a.uuid} · ${a.email || ""}` })),
      el("td", { text: a.plan || "—" }),
      bar(s.pinned_count, s.pinned_count_limit, String),
      bar(s.pinned_bytes, s.pinned_bytes_limit, bytes),
      bar(s.ingress, s.ingress_limit, bytes),
      bar(s.egress, s.egress_limit, bytes),
      bar(s.ipns, s.ipns_limit, String),
    ));
  }
  if (!page.data.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted", text: "No Gateway3 accounts." })));
  const next = $("accounts-next");
  next.disabled = !page.next_cursor;
  next.onclick = () => run(() => loadAccounts(page.next_cursor));
}

function setupRotate() {
  $("rotate").addEventListener("click", () => {
    if (!confirm("Rotate the partner token? The current one stops working at once, everywhere.")) return;
    run(async () => {
      const rotated = await api("POST", "/api/v1/reseller/token/rotate");
      session.set(rotated.data.token, "partner");
      $("rotated").textContent = rotated.data.token;
      $("rotated-box").hidden = false;
    });
  });
  $("copy-rotated").addEventListener("click", () => copy($("rotated")));
}

// --- Operator view. -------------------------------------------------------------------------
async function loadOperator(cursor = null) {
  $("who").textContent = "operator";
  const query = cursor ? `?limit=50&cursor=${encodeURIComponent(cursor)}` : "?limit=50";
  const page = await api("GET", `/api/v1/admin/partners${query}`);
  const body = $("partners-body");
  body.replaceChildren();
  for (const p of page.data) {
    const topUp = el("input", { "aria-label": `Top up ${p.name}`, inputmode: "decimal", size: "7" });
    const tier = el("input", { "aria-label": `Tier of ${p.name}`, inputmode: "decimal", size: "5", value: String(p.tier_multiplier) });
    const act = (path, body) => run(async () => {
      await api("POST", `/api/v1/admin/partners/${p.id}/${path}`, body);
      await loadOperator(cursor);
    }, (err) => { $("partners-error").textContent = `${p.name}: ${err.message} (${err.status})`; });
    body.append(el("tr", { "data-partner": p.id },
      el("td", {}, el("span", { text: p.name }), el("span", { class: "sub", text: p.id })),
      el("td", { text: usd(p.balance_usd) }),
      el("td", { text: `×${p.tier_multiplier}` }),
      el("td", {}, el("span", { class: `status ${p.suspended ? "suspended" : "active"}`, text: p.suspended ? "suspended" : "active" })),
      el("td", { class: "row" }, topUp, el("button", { type: "button", text: "Top up", onclick: () => act("topup", { amount_usd: Number(topUp.value) }) })),
      el("td", { class: "row" }, tier, el("button", { type: "button", text: "Set", onclick: () => act("tier", { tier_multiplier: Number(tier.value) }) })),
      el("td", {}, el("button", { type: "button", class: p.suspended ? "" : "danger", text: p.suspended ? "Resume" : "Suspend",
        onclick: () => act(p.suspended ? "unsuspend" : "suspend") })),
    ));
  }
  const next = $("partners-next");
  next.disabled = !page.next_cursor;
  next.onclick = () => run(() => loadOperator(page.next_cursor));
  startLive();
}

// Sums of the Prometheus text's samples of `name`, by the value of `label` (or "" for all).
function samples(text, name, label) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const lm = label && m[2] ? new RegExp(`${label}="([^"]*)"`).exec(m[2]) : null;
    const key = lm ? lm[1] : "";
    out.set(key, (out.get(key) || 0) + Number(m[3]));
  }
  return out;
}

const live = { timer: null, last: null, points: [[], [], [], []], chart: null };
function stopLive() {
  clearInterval(live.timer);
  live.timer = null;
}
function startLive() {
  if (live.timer) return;
  pollLive();
  live.timer = setInterval(pollLive, 3000);
}
async function pollLive() {
  let text;
  try {
    const resp = await fetch("/metrics");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    text = await resp.text();
  } catch (err) {
    banner(`Live traffic: cannot read /metrics (${err.message}); retrying every 3 s.`);
    return;
  }
  const codes = samples(text, "tollgate_requests_total", "code");
  const upstream = [...samples(text, "tollgate_upstream_errors_total", "kind").values()].reduce((a, b) => a + b, 0);
  const total = [...codes.values()].reduce((a, b) => a + b, 0);
  const denied = total - (codes.get("ok") || 0);
  const now = Date.now() / 1000;
  if (live.last) {
    const dt = now - live.last.at;
    const rate = (total - live.last.total) / dt;
    const deniedRate = (denied - live.last.denied) / dt;
    const upstreamRate = (upstream - live.last.upstream) / dt;
    $("live-rate").textContent = rate.toFixed(1);
    $("live-denied").textContent = deniedRate.toFixed(1);
    $("live-upstream").textContent = upstreamRate.toFixed(1);
    const p = live.points;
    p[0].push(now); p[1].push(rate); p[2].push(deniedRate); p[3].push(upstreamRate);
    if (p[0].length > 100) for (const s of p) s.shift();
    drawLive();
  }
  live.last = { at: now, total, denied, upstream };
  const body = $("denials-body");
  body.replaceChildren();
  for (const [code, n] of [...codes.entries()].filter(([c]) => c !== "ok").sort((a, b) => b[1] - a[1])) {
    body.append(el("tr", {}, el("td", { text: code }), el("td", { text: String(n) })));
  }
  if (!body.children.length) body.append(el("tr", {}, el("td", { class: "muted", text: "No denials yet." })));
}
function drawLive() {
  const box = $("live-chart");
  if (!live.chart) {
    live.chart = new uPlot({
      width: Math.max(300, box.clientWidth || 800),
      height: 220,
      series: [{}, { label: "requests/s", stroke: "#2456d6" }, { label: "denials/s", stroke: "#b54708" }, { label: "upstream errors/s", stroke: "#b42318" }],
      scales: { x: { time: true } },
    }, live.points, box);
  } else {
    live.chart.setData(live.points);
  }
}

// --- Start. ----------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  setupSignIn();
  setupKeys();
  setupRotate();
  await redeemLink();
  await show();
});
// A sign-in link opened in a tab that already shows the console changes only the fragment.
window.addEventListener("hashchange", async () => {
  await redeemLink();
  await show();
});
