// govedge operator UI, configuration: the outlet page's config section and the /ui/config
// page (scopes, drift, editor, history, diff, rollback). app.js hands in its helpers.
// Every value shown goes through esc(): scope comments and config strings are user text.
"use strict";
window.govedgeConfig = function (h) {
  const { esc, tr, time } = h;
  const fmt = (key, vars) => tr(key).replace(/\{(\w+)\}/g, (_, k) => String(vars[k]));
  const short = (hash) => (hash ? `<code title="${esc(hash)}">${esc(hash.slice(0, 12))}</code>` : "-");
  const json = (v) => esc(v === undefined ? "" : JSON.stringify(v));
  const cst = (s) => `<span class="st cst-${esc(s)}" data-cfg-status="${esc(s)}">${esc(tr(s))}</span>`;
  const scopeLink = (s) => `<a href="/ui/config?scope=${encodeURIComponent(s)}" data-scope-link="${esc(s)}">${esc(s)}</a>`;
  const outletLink = (id) => `<a href="/ui/outlets/${encodeURIComponent(id)}">${esc(id)}</a>`;
  // parse_scope's rules (docs/config.md, "Scopes and layering"), checked here so a typo
  // gets a sentence in the operator's language rather than a 404 for an odd path.
  const SCOPE = /^(global|region:[0-9]{2,12}|kind:[A-Za-z0-9][A-Za-z0-9_.-]{0,31}|outlet:[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$/;
  const api = (scope, tail = "") => "/api/v1/config/" + encodeURIComponent(scope) + tail;

  async function call(method, url, body, headers = {}) {
    const init = { method, cache: "no-store", headers: { ...headers } };
    if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    const r = await fetch(url, init);
    let answer = null;
    try { answer = await r.json(); } catch (e) { answer = null; }
    return { status: r.status, ok: r.ok, json: answer };
  }

  // Leaves of the effective config in path order: objects are walked, lists are one value
  // (as provenance counts them).
  function leaves(value, prefix, out) {
    if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
      Object.keys(value).sort().forEach((k) => leaves(value[k], prefix ? prefix + "." + k : k, out));
    } else if (prefix) out.push([prefix, value]);
    return out;
  }

  function changesTable(changes, id) {
    if (!changes.length) return `<p class="muted" id="${id}">${esc(tr("no_changes"))}</p>`;
    return `<table class="diff" id="${id}"><tr><th>${esc(tr("setting"))}</th><th></th><th>${esc(tr("from"))}</th><th>${esc(tr("to"))}</th></tr>` +
      changes.map((c) => `<tr class="op-${esc(c.op)}" data-path="${esc(c.path)}"><td><code>${esc(c.path)}</code></td><td>${esc(tr("op_" + c.op, c.op))}</td>` +
        `<td><code>${c.op === "added" ? "" : json(c.from)}</code></td><td><code>${c.op === "removed" ? "" : json(c.to)}</code></td></tr>`).join("") + "</table>";
  }

  function refusal(r) {
    if (!r) return "-";
    return `${esc(tr("cr_" + r.reason, r.reason))}${r.detail ? ` <span class="muted">(${esc(r.detail)})</span>` : ""} · ${esc(tr("version"))} ${esc(r.version ?? "-")} · ${time(r.at)}`;
  }

  function outletSection(c) {
    const head = `<h2>${esc(tr("configuration"))}`;
    if (!c) return `<section id="config">${head}</h2><p class="muted">${esc(tr("none"))}</p></section>`;
    const eff = c.effective, prov = c.provenance || {};
    const rows = leaves(eff.config, "", []);
    const d = c.desired || {}, r = c.reported || {};
    return `<section id="config">${head} ${cst(c.status)} <span class="muted">${esc(tr("since"))}: ${time(c.since)}</span></h2>` +
      (c.reason ? `<p class="muted" id="config-reason">${esc(c.reason)}</p>` : "") +
      `<table class="cfg-sync"><tr><th></th><th>${esc(tr("version"))}</th><th>${esc(tr("hash"))}</th><th>${esc(tr("time"))}</th></tr>` +
      `<tr><th>${esc(tr("desired"))}</th><td id="desired-version">${esc(d.version ?? "-")}</td><td>${short(d.hash)}</td><td>${time(d.published_at || d.issued_at)}</td></tr>` +
      `<tr><th>${esc(tr("reported"))}</th><td id="reported-version">${esc(r.version ?? "-")}</td><td>${short(r.hash)}</td><td>${time(r.at)}</td></tr>` +
      `<tr><th>${esc(tr("last_refusal"))}</th><td colspan="3" id="last-refusal">${refusal(c.last_refusal)}</td></tr></table>` +
      (eff.pending_publication ? `<p class="warn" id="config-pending">${esc(tr(eff.held ? "held" : "pending_publication"))}` +
        (eff.held ? ` <span class="muted">${esc(eff.held.reason || "")}${eff.held.not_before ? " · " + time(eff.held.not_before) : ""}</span>` : "") + "</p>" : "") +
      `<h3>${esc(tr("effective_config"))} ${short(eff.hash)}</h3><p class="muted">${esc(tr("layers"))}: ${eff.layers.map(scopeLink).join(" → ")}</p>` +
      (rows.length ? `<table id="effective"><tr><th>${esc(tr("setting"))}</th><th>${esc(tr("value"))}</th><th>${esc(tr("layer"))}</th></tr>` +
        rows.map(([path, v]) => `<tr data-path="${esc(path)}"><td><code>${esc(path)}</code></td><td class="val">${esc(typeof v === "string" ? v : JSON.stringify(v))}</td>` +
          `<td class="layer" data-layer="${esc(prov[path] || "")}">${prov[path] ? scopeLink(prov[path]) : "-"}</td></tr>`).join("") + "</table>"
        : `<p class="muted">${esc(tr("none"))}</p>`) + "</section>";
  }

  // ---- the /ui/config page ----
  const ed = { scope: null, base: 0, current: 0, canWrite: false };
  const $ = (id) => document.getElementById(id);

  function skeleton(boot) {
    const write = boot.can_write;
    return `<div class="cfg-grid"><section><h2>${esc(tr("scopes"))}</h2><div id="scope-list"></div>` +
      `<form id="open-scope"><input id="scope-input" placeholder="${esc(tr("scope_hint"))}" maxlength="200" size="36"> <button type="submit">${esc(tr("open_scope"))}</button></form><div id="scope-error"></div></section>` +
      `<section><h2>${esc(tr("out_of_sync"))}</h2><div id="drift-list"></div></section></div>` +
      `<section id="editor" hidden><h2>${esc(tr("editing"))} <code id="ed-scope"></code> <span id="ed-base" class="muted"></span></h2>` +
      (write ? "" : `<p class="muted" id="read-only">${esc(tr("read_only"))}</p>`) +
      `<textarea id="ed-doc" rows="18" spellcheck="false"${write ? "" : " readonly"}></textarea>` +
      (write ? `<div class="ed-actions"><label>${esc(tr("comment"))} <input id="ed-comment" maxlength="1024" size="40"></label> ` +
        `<label><input type="checkbox" id="ed-closed"> ${esc(tr("closed_hours_only"))}</label> ` +
        `<button type="button" id="btn-validate">${esc(tr("validate"))}</button> <button type="button" id="btn-save">${esc(tr("save"))}</button></div>` : "") +
      `<div id="ed-result"></div></section>` +
      `<section id="history" hidden><h2>${esc(tr("cfg_history"))}</h2><div id="hist-list"></div>` +
      `<p class="diff-ctl">${esc(tr("from"))} <select id="diff-from"></select> ${esc(tr("to"))} <select id="diff-to"></select> <button type="button" id="btn-diff">${esc(tr("compare"))}</button></p><div id="diff-out"></div></section>`;
  }

  function update(d) {
    $("scope-list").innerHTML = d.scopes.length ? `<table><tr><th>${esc(tr("scope"))}</th><th>${esc(tr("version"))}</th><th>${esc(tr("author"))}</th><th>${esc(tr("time"))}</th><th>${esc(tr("comment"))}</th></tr>` +
      d.scopes.map((s) => `<tr data-scope="${esc(s.scope)}"><td>${scopeLink(s.scope)}</td><td class="version">${esc(s.version)}</td><td>${esc(s.author)}</td><td>${time(s.created_at)}</td><td>${esc(s.comment || "")}</td></tr>`).join("") + "</table>"
      : `<p class="muted">${esc(tr("none"))}</p>`;
    $("drift-list").innerHTML = d.drift.length ? `<table><tr><th>${esc(tr("outlet"))}</th><th>${esc(tr("sync_status"))}</th><th>${esc(tr("since"))}</th><th>${esc(tr("desired"))}</th><th>${esc(tr("reported"))}</th></tr>` +
      d.drift.map((x) => `<tr data-drift="${esc(x.outlet_id)}"><td>${outletLink(x.outlet_id)}</td><td>${cst(x.status)} <span class="muted">${esc(x.reason || "")}</span></td><td>${time(x.since)}</td><td>${esc(x.desired_version ?? "-")}</td><td>${esc(x.reported_version ?? "-")}</td></tr>`).join("") + "</table>"
      : `<p class="muted" id="all-in-sync">${esc(tr("none"))}</p>`;
  }

  // The outcome of the last action, under the editor (id: what the tests look for).
  function message(html, id) {
    $("ed-result").innerHTML = `<div id="${id}">${html}</div>`;
  }

  function problems(answer) {
    const detail = answer && answer.detail;
    if (Array.isArray(detail)) {
      return `<ul id="ed-errors">${detail.map((e) => `<li><code>${esc((e.loc || []).join(".") || "/")}</code>: ${esc(e.msg)}</li>`).join("")}</ul>`;
    }
    return `<p>${esc(typeof detail === "string" ? detail : JSON.stringify(detail))}</p>`;
  }

  function failed(res) {
    const head = res.status === 422 ? tr("invalid") : `${tr("request_failed")} (${res.status})`;
    message(`<div class="error"><b>${esc(head)}</b>${problems(res.json)}</div>`, res.status === 422 ? "invalid" : "failed");
  }

  function parsed() {
    try {
      const doc = JSON.parse($("ed-doc").value);
      if (doc && typeof doc === "object" && !Array.isArray(doc)) return doc;
      message(`<p class="error">${esc(tr("not_json"))}</p>`, "not-json");
    } catch (e) {
      message(`<p class="error">${esc(tr("not_json"))}: ${esc(e.message)}</p>`, "not-json");
    }
    return null;
  }

  function showBase() {
    $("ed-scope").textContent = ed.scope;
    $("ed-base").textContent = ed.base ? `${tr("based_on")} ${ed.base}` : tr("new_scope");
  }

  async function openScope(scope) {
    $("scope-error").innerHTML = SCOPE.test(scope) ? "" : `<p class="error" id="bad-scope">${esc(tr("bad_scope"))}: <code>${esc(scope)}</code></p>`;
    if (!SCOPE.test(scope)) return;
    const res = await call("GET", api(scope));
    if (res.status !== 200 && res.status !== 404) { $("editor").hidden = false; failed(res); return; }
    ed.scope = scope;
    ed.base = res.ok ? res.json.version : 0;
    $("ed-doc").value = JSON.stringify(res.ok ? res.json.document : {}, null, 2);
    $("ed-result").innerHTML = "";
    $("editor").hidden = false;
    showBase();
    history.replaceState(null, "", "/ui/config?scope=" + encodeURIComponent(scope));
    await loadHistory();
  }

  async function loadHistory() {
    const res = await call("GET", api(ed.scope, "/versions"));
    const versions = res.ok ? res.json : [];
    ed.current = versions.length ? versions[0].version : 0;
    $("history").hidden = !versions.length;
    $("hist-list").innerHTML = `<table><tr><th>${esc(tr("version"))}</th><th>${esc(tr("author"))}</th><th>${esc(tr("time"))}</th><th>${esc(tr("comment"))}</th><th></th></tr>` +
      versions.map((v) => `<tr data-version="${esc(v.version)}"><td>${esc(v.version)}${v.version === ed.current ? ` <span class="muted">(${esc(tr("current"))})</span>` : ""}</td><td>${esc(v.author)}</td><td>${time(v.created_at)}</td>` +
        `<td>${esc(v.comment || "")}${v.rolled_back_to ? ` <span class="muted">${esc(tr("rollback_of"))} ${esc(v.rolled_back_to)}</span>` : ""}${v.closed_hours_only ? ` <span class="muted">· ${esc(tr("closed_hours_only"))}</span>` : ""}</td>` +
        `<td>${ed.canWrite && v.version !== ed.current ? `<button type="button" data-rollback="${esc(v.version)}">${esc(tr("rollback"))}</button>` : ""}</td></tr>`).join("") + "</table>";
    const options = versions.map((v) => `<option value="${esc(v.version)}">${esc(v.version)}</option>`).join("");
    $("diff-from").innerHTML = options;
    $("diff-to").innerHTML = options;
    if (versions.length > 1) $("diff-from").value = String(versions[1].version);
    $("diff-out").innerHTML = "";
  }

  async function validate() {
    const doc = parsed();
    if (!doc) return;
    const res = await call("POST", "/api/v1/config/validate", { scope: ed.scope, document: doc });
    if (!res.ok) { failed(res); return; }
    const d = res.json;
    const head = d.outlets_changed ? fmt("valid_changes", { n: d.outlets_changed }) : tr("valid_no_change");
    message(`<p class="ok"><b>${esc(head)}</b></p>` + (d.outlets_taking_devices_away ? `<p class="warn" id="takes-away">${esc(tr("takes_away"))}: ${esc(d.outlets_taking_devices_away)} ${esc(tr("outlets"))}</p>` : "") +
      d.outlets.map((o) => `<div class="dry-outlet${o.takes_devices_away.length ? " takes-away" : ""}" data-outlet="${esc(o.outlet_id)}"><h3>${outletLink(o.outlet_id)}${o.too_large ? ` <span class="warn">${esc(tr("too_large"))}</span>` : ""}</h3>` +
        (o.takes_devices_away.length ? `<p class="warn">${esc(tr("takes_away"))}: ${o.takes_devices_away.map(esc).join("; ")}</p>` : "") +
        changesTable(o.changes, "dry-" + esc(o.outlet_id).replace(/[^A-Za-z0-9_-]/g, "_")) + "</div>").join(""), "dry-run");
  }

  async function save() {
    const doc = parsed();
    if (!doc) return;
    const query = new URLSearchParams();
    const comment = $("ed-comment").value.trim();
    if (comment) query.set("comment", comment);
    if ($("ed-closed").checked) query.set("closed_hours_only", "true");
    const res = await call("PUT", api(ed.scope, "?" + query), doc, { "If-Match": String(ed.base) });
    if (res.status === 412) { await conflict(res.json.current_version); return; }
    if (!res.ok) { failed(res); return; }
    ed.base = res.json.version;
    showBase();
    $("ed-comment").value = "";
    message(`<span class="ok">${esc(fmt("saved", { v: ed.base }))}</span>`, "saved");
    await loadHistory();
    h.refresh();
  }

  // Someone stored a version after this editor loaded: say so, keep the text, show what
  // they changed, and let the operator store their text over it knowingly.
  async function conflict(current) {
    const theirs = ed.base ? await call("GET", api(ed.scope, `/diff?from=${ed.base}&to=${current}`)) : null;
    message(`<p class="error"><b>${esc(fmt("conflict", { v: current }))}</b></p>` +
      (theirs && theirs.ok ? `<h3>${esc(tr("their_changes"))} (${esc(ed.base)} → ${esc(current)})</h3>${changesTable(theirs.json.changes, "their-changes")}` : "") +
      `<button type="button" id="btn-save-over" data-version="${esc(current)}">${esc(fmt("save_over", { v: current }))}</button>`, "conflict");
    await loadHistory();
    h.refresh();
  }

  async function rollback(version) {
    // The editor's comment and closed-hours choice apply to a rollback too.
    const body = { version, closed_hours_only: $("ed-closed").checked };
    const comment = $("ed-comment").value.trim();
    if (comment) body.comment = comment;
    const res = await call("POST", api(ed.scope, "/rollback"), body, { "If-Match": String(ed.current) });
    if (res.status === 412) { await conflict(res.json.current_version); return; }
    if (!res.ok) { failed(res); return; }
    $("ed-comment").value = "";
    await openScope(ed.scope);
    message(`<span class="ok">${esc(fmt("rolled_back", { v: res.json.version }))}</span>`, "rolled-back");
    h.refresh();
  }

  async function diff() {
    const res = await call("GET", api(ed.scope, `/diff?from=${$("diff-from").value}&to=${$("diff-to").value}`));
    $("diff-out").innerHTML = res.ok ? changesTable(res.json.changes, "diff-table") : `<p class="error">${esc(tr("request_failed"))} (${res.status})</p>`;
  }

  function mount(boot) {
    ed.canWrite = !!boot.can_write;
    update(boot);
    $("open-scope").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const scope = $("scope-input").value.trim();
      if (scope) openScope(scope);
    });
    document.getElementById("main").addEventListener("click", (ev) => {
      const link = ev.target.closest("a[data-scope-link]");
      if (link) { ev.preventDefault(); openScope(link.dataset.scopeLink); return; }
      const b = ev.target.closest("button");
      if (!b) return;
      if (b.id === "btn-validate") validate();
      else if (b.id === "btn-save") save();
      else if (b.id === "btn-save-over") { ed.base = Number(b.dataset.version); showBase(); save(); }
      else if (b.id === "btn-diff") diff();
      else if (b.dataset.rollback) rollback(Number(b.dataset.rollback));
    });
    if (boot.scope) openScope(boot.scope);
  }

  return { outletSection, skeleton, mount, update };
};
