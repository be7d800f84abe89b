// govedge operator UI, playbook runs (docs/playbook-runs.md): the /ui/playbook-runs list
// with the start form, and one run's page: a row per outlet that follows the run live
// (each event of the run's Server-Sent Events stream refetches the per-host results),
// the held-back outlets with the reason, and cancel. The form and the cancel button are
// drawn only for roles that may use them. app.js hands in its helpers.
"use strict";
window.govedgePlaybooks = function (h) {
  const { esc, tr, time, call } = h;
  const $ = (id) => document.getElementById(id);
  const DONE = ["successful", "failed", "canceled", "error", "interrupted"];
  const COUNTS = ["ok", "changed", "failed", "unreachable", "skipped"];
  // The order host statuses are listed in: results first, the worst early.
  const HOST_STATES = ["failed", "unreachable", "changed", "ok", "skipped", "pending", "held", "canceled", "interrupted"];
  const TARGETS = ["outlets", "regions", "kinds", "tags"];
  const view = { id: null, canRun: false, boot: null, stream: null, fetching: false, again: false, key: null };
  const pstate = (s) => `<span class="st pbs-${esc(s)}" data-state="${esc(s)}">${esc(tr("ps_" + s, s))}</span>`;
  const outletLink = (o) => `<a href="/ui/outlets/${encodeURIComponent(o)}">${esc(o)}</a>`;
  const runLink = (id, text) => `<a href="/ui/playbook-runs/${encodeURIComponent(id)}">${esc(text)}</a>`;

  // The API's reason for a refusal: its detail text, or each field problem of a 422.
  function why(res) {
    const detail = res.json && res.json.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    return detail ? JSON.stringify(detail) : "";
  }

  function refused(res) {
    const reason = why(res);
    return `<p class="error" id="pb-refused">${esc(tr("pb_refused"))} (${res.status})${reason ? ": " + esc(reason) : ""}</p>`;
  }

  function countsText(counts) {
    const parts = HOST_STATES.filter((s) => counts[s]).map((s) => `<span data-count-state="${esc(s)}">${pstate(s)} ${esc(counts[s])}</span>`);
    return parts.length ? parts.join(" ") : `<span class="muted">${esc(tr("none"))}</span>`;
  }

  function targetText(target) {
    const parts = TARGETS.concat(["alert_rules"]).filter((k) => (target[k] || []).length)
      .map((k) => `${esc(tr("pb_t_" + k))}: ${esc(target[k].map((v) => (k === "alert_rules" ? tr("r_" + v, v) : v)).join(", "))}`);
    return parts.join(" · ");
  }

  // ---- the list and the start form ----
  function listHtml(rows) {
    if (!rows.length) return `<p class="muted" id="no-runs">${esc(tr("none"))}</p>`;
    return `<table id="run-list"><tr><th>ID</th><th>${esc(tr("pb_playbook"))}</th><th>${esc(tr("pb_by"))}</th><th>${esc(tr("pb_created"))}</th>` +
      `<th>${esc(tr("state"))}</th><th>${esc(tr("pb_hosts"))}</th></tr>` +
      rows.map((r) => `<tr data-run="${esc(r.id)}"><td>${runLink(r.id, r.id)}</td><td>${runLink(r.id, r.playbook)}${r.check ? ` <span class="muted">(${esc(tr("pb_check_short"))})</span>` : ""}</td>` +
        `<td>${esc(r.created_by)}</td><td>${time(r.created_at)}</td><td data-run-state="${esc(r.status)}">${pstate(r.status)}</td><td>${countsText(r.host_counts || {})}</td></tr>`).join("") +
      "</table>";
  }

  function varInput(name, spec) {
    const type = spec.type || "str";
    const id = "pb-var-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    const attrs = `id="${esc(id)}" data-var="${esc(name)}" data-type="${esc(type)}"`;
    let input;
    // Unset is not sent: an extra var would override the value an outlet's access
    // record sets for that host (e.g. a per-PC switch).
    if (type === "bool") {
      const unset = spec.default === undefined || spec.default === null ? tr("pb_unset") : `${tr("pb_unset")} (${spec.default ? "true" : "false"})`;
      input = `<select ${attrs}><option value="">${esc(unset)}</option><option value="true">true</option><option value="false">false</option></select>`;
    }
    else if (Array.isArray(spec.choices)) {
      input = `<select ${attrs}><option value=""></option>${spec.choices.map((c) => `<option value="${esc(JSON.stringify(c))}">${esc(c)}</option>`).join("")}</select>`;
    } else {
      const kind = type === "int" || type === "float" ? "number" : "text";
      const shown = spec.default === undefined || spec.default === null ? "" : (typeof spec.default === "string" ? spec.default : JSON.stringify(spec.default));
      input = `<input type="${kind}" ${attrs}${type === "float" ? ' step="any"' : ""} placeholder="${esc(shown)}" size="30">`;
    }
    return `<label class="pb-var">${esc(name)}${spec.required ? ` <b>(${esc(tr("pb_required"))})</b>` : ""} ${input}` +
      `${spec.description ? ` <span class="muted">${esc([].concat(spec.description).join(" "))}</span>` : ""}</label>`;
  }

  function varsHtml() {
    const book = (view.boot.playbooks || []).find((p) => p.name === $("pb-playbook").value);
    if (!book) return "";
    const names = Object.keys(book.variables || {});
    return (book.description ? `<p class="muted" id="pb-description">${esc(book.description)}</p>` : "") +
      (names.length ? `<fieldset><legend>${esc(tr("pb_variables"))}</legend>${names.map((n) => varInput(n, book.variables[n])).join("")}</fieldset>` : "");
  }

  function formHtml(d) {
    if (!view.canRun) return `<p class="muted" id="read-only">${esc(tr("pb_read_only"))}</p>`;
    const hint = esc(tr("pb_list_hint"));
    return `<form id="run-form"><h2>${esc(tr("pb_start"))}</h2>` +
      `<label>${esc(tr("pb_playbook"))} <select id="pb-playbook">${(d.playbooks || []).map((p) => `<option value="${esc(p.name)}">${esc(p.name)}</option>`).join("")}</select></label>` +
      `<div id="pb-vars"></div><fieldset><legend>${esc(tr("pb_targets"))}</legend>` +
      TARGETS.map((k) => `<label class="pb-var">${esc(tr("pb_t_" + k))} <input id="pb-${k}" size="40" placeholder="${hint}"></label>`).join("") +
      `<div class="pb-rules">${esc(tr("pb_t_alert_rules"))}: ${(d.alert_rules || []).map((r) => `<label><input type="checkbox" name="pb-alert-rule" value="${esc(r)}"> ${esc(tr("r_" + r, r))}</label>`).join(" ")}</div></fieldset>` +
      `<p class="cp-actions"><label><input type="checkbox" id="pb-check"> ${esc(tr("pb_check"))}</label> <label><input type="checkbox" id="pb-open"> ${esc(tr("pb_opening_hours"))}</label> ` +
      `<button type="submit" id="btn-run">${esc(tr("pb_start_button"))}</button></p><div id="pb-message"></div></form>`;
  }

  const splitList = (text) => text.split(/[\s,，、;；]+/).filter(Boolean);

  // The variables typed, as the types the playbook documents; null (and a message) when
  // one does not read as its type, so nothing is sent that the server would refuse anyway.
  function readVars() {
    const values = {};
    for (const el of document.querySelectorAll("#pb-vars [data-var]")) {
      const name = el.dataset.var, type = el.dataset.type;
      const text = el.value.trim();
      if (!text) continue;
      if (type === "bool") { values[name] = text === "true"; continue; }
      try {
        if (el.tagName === "SELECT") values[name] = JSON.parse(text);
        else if (type === "int" && /^-?\d+$/.test(text)) values[name] = Number.parseInt(text, 10);
        else if (type === "float" && Number.isFinite(Number(text))) values[name] = Number(text);
        else if (type === "list" || type === "dict") values[name] = JSON.parse(text);
        else if (type === "str" || type === "path") values[name] = text;
        else throw new Error(type);
      } catch (e) {
        $("pb-message").innerHTML = `<p class="error" id="pb-bad-value">${esc(tr("pb_bad_value"))} ${esc(name)} (${esc(type)})</p>`;
        return null;
      }
    }
    return values;
  }

  async function start() {
    const extra = readVars();
    if (extra === null) return;
    const target = {};
    TARGETS.forEach((k) => { target[k] = splitList($("pb-" + k).value); });
    target.alert_rules = Array.from(document.querySelectorAll("input[name=pb-alert-rule]:checked")).map((el) => el.value);
    if (!Object.values(target).some((v) => v.length)) {
      $("pb-message").innerHTML = `<p class="error" id="pb-no-target">${esc(tr("pb_no_target"))}</p>`;
      return;
    }
    const body = { playbook: $("pb-playbook").value, target, extra_vars: extra, check: $("pb-check").checked, during_opening_hours: $("pb-open").checked };
    $("btn-run").disabled = true;
    const res = await call("POST", "/api/v1/playbook-runs", body);
    $("btn-run").disabled = false;
    if (res.ok) { window.location.assign(`/ui/playbook-runs/${encodeURIComponent(res.json.id)}`); return; }
    $("pb-message").innerHTML = refused(res);
  }

  // ---- one run ----
  function skeleton() {
    return `<section id="run-head"></section><section><h2>${esc(tr("outlets"))}</h2><div id="hosts"></div></section>` +
      `<section id="held-section"><h2>${esc(tr("pb_held"))}</h2><div id="held"></div></section>`;
  }

  function headHtml(r) {
    const running = !DONE.includes(r.status);
    const actions = view.canRun ? (running ? `<p class="cp-actions"><button type="button" id="btn-cancel">${esc(tr("pb_cancel"))}</button></p>` : "")
      : `<p class="muted" id="read-only">${esc(tr("pb_read_only"))}</p>`;
    return `<h2>${esc(tr("pb_run"))} ${esc(r.id)} <code>${esc(r.playbook)}</code> <span id="run-state" data-run-state="${esc(r.status)}">${pstate(r.status)}</span>` +
      `${r.check ? ` <span class="muted">(${esc(tr("pb_check_short"))})</span>` : ""}</h2>` +
      `<p class="muted">${esc(tr("pb_by"))}: ${esc(r.created_by)} · ${esc(tr("pb_created"))}: ${time(r.created_at)} · ${esc(tr("pb_finished"))}: ${time(r.finished_at)}` +
      `${r.canceled_by ? ` · ${esc(tr("pb_canceled_by"))}: ${esc(r.canceled_by)}` : ""}</p><p class="muted" id="run-target">${targetText(r.target || {})}</p>` +
      (r.error ? `<p class="error" id="run-error">${esc(tr("pb_error"))}: ${esc(r.error)}</p>` : "") + actions + `<div id="run-message"></div>`;
  }

  function hostsHtml(hosts) {
    if (!hosts.length) return `<p class="muted">${esc(tr("none"))}</p>`;
    return `<table id="host-table"><tr><th>${esc(tr("outlet"))}</th><th>${esc(tr("state"))}</th>${COUNTS.map((c) => `<th>${esc(tr("pb_c_" + c))}</th>`).join("")}<th>${esc(tr("pb_last_task"))}</th></tr>` +
      hosts.map((x) => `<tr data-host="${esc(x.outlet_id)}"><td>${outletLink(x.outlet_id)}</td><td data-host-state="${esc(x.status)}">${pstate(x.status)}</td>` +
        COUNTS.map((c) => `<td data-count="${c}">${esc(x[c])}</td>`).join("") + `<td class="last-task">${esc(x.last_task || "")}</td></tr>`).join("") + "</table>";
  }

  function heldHtml(held) {
    if (!held.length) return `<p class="muted" id="none-held">${esc(tr("none"))}</p>`;
    return `<table id="held-table"><tr><th>${esc(tr("outlet"))}</th><th>${esc(tr("pb_reason"))}</th></tr>` +
      held.map((x) => `<tr data-held="${esc(x.outlet_id)}"><td>${outletLink(x.outlet_id)}</td><td class="held-reason">${esc(x.held_reason || "")}</td></tr>`).join("") + "</table>";
  }

  function drawRun(r) {
    // The head holds the cancel button and its answer: redrawn only when the run moved.
    const key = JSON.stringify([r.status, r.finished_at, r.canceled_by, r.error]);
    if (key !== view.key) {
      const kept = $("run-message") ? $("run-message").innerHTML : "";
      $("run-head").innerHTML = headHtml(r);
      $("run-message").innerHTML = kept;
      view.key = key;
    }
    $("hosts").innerHTML = hostsHtml(r.hosts.filter((x) => x.status !== "held"));
    $("held").innerHTML = heldHtml(r.hosts.filter((x) => x.status === "held"));
    document.getElementById("main").dataset.runState = r.status;
  }

  async function loadRun() {
    const res = await call("GET", `/api/v1/playbook-runs/${encodeURIComponent(view.id)}`);
    if (!res.ok) { $("run-head").innerHTML = `<p class="error">${esc(tr("request_failed"))} (${res.status})</p>`; return; }
    drawRun(res.json);
  }

  // Events come in bursts (a task on many outlets): one fetch at a time, and one more
  // after it when events came meanwhile, so the page ends on the latest results.
  async function reload() {
    if (view.fetching) { view.again = true; return; }
    view.fetching = true;
    try { await loadRun(); } finally { view.fetching = false; }
    if (view.again) { view.again = false; await reload(); }
  }

  function follow() {
    const es = new EventSource(`/api/v1/playbook-runs/${encodeURIComponent(view.id)}/stream`);
    view.stream = es;
    es.addEventListener("job_event", (ev) => {
      const e = JSON.parse(ev.data);
      // The task an outlet is on shows at once; the counts come with the refetch.
      const row = e.outlet_id ? document.querySelector(`tr[data-host="${CSS.escape(e.outlet_id)}"] .last-task`) : null;
      if (row && e.task) row.textContent = e.task;
      reload();
    });
    // The stream replays the run from its start and ends once the run has: then stop,
    // or EventSource would reconnect and replay it all again.
    es.addEventListener("end", () => { es.close(); reload(); });
  }

  async function cancel() {
    const res = await call("POST", `/api/v1/playbook-runs/${encodeURIComponent(view.id)}/cancel`);
    await reload();
    $("run-message").innerHTML = res.ok ? `<p class="ok" id="pb-cancel-asked">${esc(tr("pb_cancel_asked"))}</p>` : refused(res);
  }

  // ---- an outlet's runs (on the outlet page) ----
  function outletSection(runs) {
    const head = `<h2>${esc(tr("pb_outlet_runs"))}</h2>`;
    if (!runs || !runs.length) return `<section id="outlet-runs">${head}<p class="muted">${esc(tr("none"))}</p></section>`;
    return `<section id="outlet-runs">${head}<table><tr><th>ID</th><th>${esc(tr("pb_playbook"))}</th><th>${esc(tr("pb_created"))}</th><th>${esc(tr("pb_result_here"))}</th>` +
      `${COUNTS.map((c) => `<th>${esc(tr("pb_c_" + c))}</th>`).join("")}<th>${esc(tr("pb_run_state"))}</th></tr>` +
      runs.map((r) => `<tr data-run="${esc(r.id)}"><td>${runLink(r.id, r.id)}</td><td>${runLink(r.id, r.playbook)}</td><td>${time(r.created_at)}</td>` +
        `<td data-result="${esc(r.result.status)}">${pstate(r.result.status)}${r.result.held_reason ? ` <span class="muted">${esc(r.result.held_reason)}</span>` : ""}</td>` +
        COUNTS.map((c) => `<td data-count="${c}">${esc(r.result[c])}</td>`).join("") + `<td>${pstate(r.status)}</td></tr>`).join("") + "</table></section>";
  }

  async function refresh() {
    if (view.id !== null) { await reload(); return; }
    const res = await call("GET", "/api/v1/playbook-runs");
    if (res.ok) $("run-list-wrap").innerHTML = listHtml(res.json);
  }

  function mount(boot) {
    view.boot = boot;
    view.id = boot.run_id ?? null;
    view.canRun = !!boot.can_run;
    const main = document.getElementById("main");
    if (view.id !== null) {
      main.innerHTML = skeleton();
      main.addEventListener("click", (ev) => { if (ev.target.closest("#btn-cancel")) cancel(); });
      reload().then(follow);
      return;
    }
    main.innerHTML = `<section id="pb-form-wrap">${formHtml(boot)}</section><section><h2>${esc(tr("pb_runs"))}</h2><div id="run-list-wrap"></div></section>`;
    if (view.canRun) {
      const pick = $("pb-playbook");
      const draw = () => { $("pb-vars").innerHTML = varsHtml(); };
      pick.addEventListener("change", draw);
      draw();
      $("run-form").addEventListener("submit", (ev) => { ev.preventDefault(); start(); });
    }
    refresh();
    // Other operators' runs appear and move: the list is read again every 3 s.
    setInterval(refresh, 3000);
  }

  return { mount, refresh, outletSection };
};
