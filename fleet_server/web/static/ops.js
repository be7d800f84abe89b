// govedge operator UI, the day-to-day pages: /ui/alerts, /ui/dead-letters,
// /ui/transactions and /ui/rectifications. Each reads its API (which keeps a scoped
// operator to their regions), redraws its lists on every server-sent change, and never
// redraws a form the operator is typing in. app.js hands in its helpers.
"use strict";
window.govedgeOps = function (h) {
  const { esc, tr, time, call, alertSubject } = h;
  const $ = (id) => document.getElementById(id);
  const PAGE = 50;
  const fmt = (key, values) => tr(key).replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ""));
  const view = { page: null, data: null, offset: 0, detail: null, lastResult: null };

  // A live change and a click can both refresh a list, and their answers can arrive in
  // either order: only the latest request may draw, or page 1 lands over page 2. A
  // detail box counts apart (a list's refresh redraws its detail too): else a detail read
  // before a replay ("dead") could land over the one read after it ("pending").
  const newest = () => { let drawn = 0; return () => { const mine = ++drawn; return () => mine === drawn; }; };
  const latest = newest();
  const latestDetail = newest();

  // The API's reason for a refusal: its sentence, or its field errors joined.
  function why(res) {
    // The database, not the action: said in the page's language (the API's detail is English).
    if (res.status === 503) return tr("db_down_title");
    const d = res.json && res.json.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => e.msg).join("; ");
    return `HTTP ${res.status}`;
  }

  // Field errors of a 422 next to their fields: loc's last part names the field.
  function showFieldErrors(form, res) {
    form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
    const d = res.json && res.json.detail;
    let placed = false;
    if (Array.isArray(d)) {
      d.forEach((e) => {
        const name = (e.loc || [])[(e.loc || []).length - 1];
        const slot = form.querySelector(`.field-error[data-for="${CSS.escape(String(name))}"]`);
        if (slot) { slot.textContent = e.msg; placed = true; }
      });
    }
    return placed;
  }

  function message(id, cls, text) {
    const el = $(id);
    if (el) el.innerHTML = text ? `<p class="${cls}">${esc(text)}</p>` : "";
  }

  const isoDay = (value, plusDays) => {
    if (!value) return null;
    const d = new Date(value + "T00:00");
    d.setDate(d.getDate() + (plusDays || 0));
    return d.toISOString();
  };

  function query(params) {
    const q = new URLSearchParams();
    Object.entries(params).forEach(([k, v]) => { if (v !== null && v !== undefined && v !== "") q.set(k, String(v)); });
    return q.toString();
  }

  const pager = (rows) => `<p class="pager"><button type="button" id="prev-page"${view.offset ? "" : " disabled"}>${esc(tr("prev_page"))}</button> ` +
    `<span class="muted" id="page-range">${rows.length ? `${view.offset + 1}–${view.offset + rows.length}` : "0"}</span> ` +
    `<button type="button" id="next-page"${rows.length < PAGE ? " disabled" : ""}>${esc(tr("next_page"))}</button></p>`;

  // A page of an API that counts its matches ({items, total}): "1–50 of 120" and the
  // next button off on the last page.
  const totalPager = (page) => `<p class="pager"><button type="button" id="prev-page"${view.offset ? "" : " disabled"}>${esc(tr("prev_page"))}</button> ` +
    `<span class="muted" id="page-range">${esc(fmt("rg_shown", { from: page.total ? view.offset + 1 : 0, to: view.offset + page.items.length, total: page.total }))}</span> ` +
    `<button type="button" id="next-page"${view.offset + page.items.length >= page.total ? " disabled" : ""}>${esc(tr("next_page"))}</button></p>`;

  const outletLink = (id) => `<a href="/ui/outlets/${encodeURIComponent(id)}">${esc(id)}</a>`;
  const readOnly = () => (view.data.can_act ? "" : `<p class="muted" id="read-only">${esc(tr("ops_read_only"))}</p>`);
  const field = (name) => `<span class="field-error error" data-for="${esc(name)}"></span>`;

  // ---------------------------------------------------------------- alerts
  // What the operator sees: resolved, silenced (until a time), acknowledged or open.
  function alertState(a) {
    if (a.state === "resolved") return "resolved";
    if (a.silenced_until && new Date(a.silenced_until) > new Date()) return "silenced";
    return a.acked_at ? "acked" : "open";
  }

  const alerts = {
    skeleton(d) {
      const opt = (values, prefix) => `<option value="">${esc(tr("all"))}</option>` + values.map((v) => `<option value="${esc(v)}">${esc(tr(prefix + v, v))}</option>`).join("");
      const durations = [15, 60, 240, 1440, 10080].map((m) => `<option value="${m}"${m === 60 ? " selected" : ""}>${esc(tr("dur_" + m, m + " min"))}</option>`).join("");
      return `<section><h2>${esc(tr("nav_alerts"))}</h2><form id="alert-filters" class="filters">` +
        `<label>${esc(tr("state"))} <select id="f-state"><option value="open">${esc(tr("as_open"))}</option><option value="resolved">${esc(tr("as_resolved"))}</option><option value="all">${esc(tr("all"))}</option></select></label>` +
        `<label>${esc(tr("rule"))} <select id="f-rule">${opt(Object.keys(d.rules), "r_")}</select></label>` +
        `<label>${esc(tr("severity"))} <select id="f-severity">${opt(d.severities, "sev_")}</select></label>` +
        `<label>${esc(tr("outlet"))} <input id="f-outlet" size="14"></label>` +
        `<label>${esc(tr("region"))} <input id="f-region" size="8" placeholder="3301"></label>` +
        `<label>${esc(tr("from"))} <input type="date" id="f-since"></label><label>${esc(tr("to"))} <input type="date" id="f-until"></label></form>` +
        readOnly() + `<div id="alert-message"></div><div id="alert-list"></div></section>` +
        (d.can_act ? `<section id="silence-box" hidden><h2>${esc(tr("silence_alert"))} <span id="silence-which"></span></h2><form id="silence-form">` +
          `<label>${esc(tr("silence_reason"))} <input id="silence-reason" name="reason" size="50" maxlength="500"></label> ${field("reason")}` +
          `<label>${esc(tr("silence_for"))} <select id="silence-minutes" name="minutes">${durations}</select></label> ${field("minutes")}` +
          ` <button type="submit" id="silence-submit">${esc(tr("silence_do"))}</button> <button type="button" id="silence-cancel">${esc(tr("cancel"))}</button></form></section>` : "") +
        `<section><h2>${esc(tr("alert_rules"))}</h2><div id="rule-overrides"></div>${d.can_act ? alerts.ruleForm(d) : ""}</section>`;
    },

    ruleForm(d) {
      const scopes = (d.whole_fleet ? ["global", "region", "kind", "outlet"] : ["region", "outlet"]);
      return `<form id="rule-form"><h3>${esc(tr("rule_override_edit"))}</h3>` +
        `<label>${esc(tr("scope"))} <select id="rf-scope" name="scope">${scopes.map((s) => `<option value="${s}">${esc(tr("ls_" + s, s))}</option>`).join("")}</select></label> ${field("scope")} ` +
        `<label>${esc(tr("scope_value"))} <input id="rf-scope-value" name="scope_value" size="14" placeholder="${esc(d.prefixes[0] || "")}"></label> ${field("scope_value")} ` +
        `<label>${esc(tr("rule"))} <select id="rf-rule" name="rule">${Object.keys(d.rules).map((r) => `<option value="${esc(r)}">${esc(tr("r_" + r, r))}</option>`).join("")}</select></label> ${field("rule")}` +
        `<div id="rf-params"></div><p class="muted">${esc(tr("rule_blank_hint"))}</p><button type="submit" id="rf-save">${esc(tr("save"))}</button><div id="rule-message"></div></form>`;
    },

    params() {
      const rule = $("rf-rule").value, defaults = view.data.rules[rule] || {};
      $("rf-params").innerHTML = Object.entries(defaults).map(([name, dflt]) => {
        let input;
        if (typeof dflt === "boolean") input = `<select data-param="${esc(name)}" data-kind="bool"><option value=""></option><option value="true">true</option><option value="false">false</option></select>`;
        else if (name === "severity") input = `<select data-param="${esc(name)}" data-kind="str"><option value=""></option>${view.data.severities.map((s) => `<option value="${s}">${esc(tr("sev_" + s, s))}</option>`).join("")}</select>`;
        else input = `<input data-param="${esc(name)}" data-kind="number" size="10" placeholder="${esc(dflt)}">`;
        return `<label class="pb-var">${esc(name)} ${input} <span class="muted">${esc(tr("default"))}: ${esc(JSON.stringify(dflt))}</span> ${field(name)}</label>`;
      }).join("");
    },

    readParams() {
      const params = {};
      document.querySelectorAll("#rf-params [data-param]").forEach((el) => {
        const text = el.value.trim();
        if (!text) return;
        // A number that does not read as one is sent as typed: the server says why.
        if (el.dataset.kind === "bool") params[el.dataset.param] = text === "true";
        else if (el.dataset.kind === "number") params[el.dataset.param] = text !== "" && Number.isFinite(Number(text)) ? Number(text) : text;
        else params[el.dataset.param] = text;
      });
      return params;
    },

    url() {
      return "/api/v1/alerts?" + query({
        state: $("f-state").value, rule: $("f-rule").value, severity: $("f-severity").value,
        outlet_id: $("f-outlet").value.trim(), region: $("f-region").value.trim(),
        since: isoDay($("f-since").value), until: isoDay($("f-until").value, 1), limit: PAGE, offset: view.offset,
      });
    },

    async refresh() {
      const current = latest();
      const [list, rules] = await Promise.all([call("GET", alerts.url()), call("GET", "/api/v1/alert-rules")]);
      if (!current()) return;
      if (list.ok) $("alert-list").innerHTML = alerts.table(list.json) + pager(list.json);
      else message("alert-message", "error", `${tr("request_failed")}: ${why(list)}`);
      if (rules.ok) $("rule-overrides").innerHTML = alerts.overrides(rules.json.overrides);
    },

    table(rows) {
      if (!rows.length) return `<p class="muted" id="no-alerts">${esc(tr("none"))}</p>`;
      const act = view.data.can_act;
      return `<table id="alerts-table"><tr><th>${esc(tr("rule"))}</th><th>${esc(tr("outlet"))}</th><th>${esc(tr("device"))}</th><th>${esc(tr("severity"))}</th><th>${esc(tr("state"))}</th>` +
        `<th>${esc(tr("summary"))}</th><th>${esc(tr("since"))}</th><th>${esc(tr("acked"))}</th><th>${esc(tr("silenced"))}</th>${act ? "<th></th>" : ""}</tr>` +
        rows.map((a) => {
          const s = alertState(a);
          const silenced = s === "silenced" ? `${time(a.silenced_until)} · ${esc(a.silenced_by || "")}: <span class="silence-reason">${esc(a.silence_reason || "")}</span>` : "";
          const buttons = act && a.state === "open" ? (a.acked_at ? "" : `<button type="button" data-alert-act="ack" data-id="${a.id}">${esc(tr("ack"))}</button> `) +
            `<button type="button" data-alert-act="silence" data-id="${a.id}">${esc(tr("silence_do"))}</button>` : "";
          return `<tr data-alert="${a.id}" data-alert-state="${s}"><td>${esc(tr("r_" + a.rule, a.rule))}</td><td>${alertSubject(a)}</td><td>${esc(a.device_id || "")}</td>` +
            `<td class="sev-${esc(a.severity)}">${esc(tr("sev_" + a.severity, a.severity))}</td><td><span class="st ast-${s}">${esc(tr("as_" + s, s))}</span></td><td>${esc(a.summary)}</td>` +
            `<td>${time(a.opened_at)}${a.resolved_at ? " → " + time(a.resolved_at) : ""}</td><td>${esc(a.acked_by || "")}</td><td>${silenced}</td>${act ? `<td>${buttons}</td>` : ""}</tr>`;
        }).join("") + "</table>";
    },

    overrides(rows) {
      if (!rows.length) return `<p class="muted" id="no-overrides">${esc(tr("rule_defaults_only"))}</p>`;
      return `<table id="overrides-table"><tr><th>${esc(tr("scope"))}</th><th>${esc(tr("rule"))}</th><th>${esc(tr("rule_params"))}</th>${view.data.can_act ? "<th></th>" : ""}</tr>` +
        rows.map((o) => `<tr data-override="${o.id}"><td>${esc(tr("ls_" + o.scope, o.scope))} ${esc(o.scope_value)}</td><td>${esc(tr("r_" + o.rule, o.rule))}</td><td><code>${esc(JSON.stringify(o.params))}</code></td>` +
          (view.data.can_act ? `<td><button type="button" data-override-edit="${o.id}">${esc(tr("edit"))}</button> <button type="button" data-override-delete="${o.id}">${esc(tr("delete"))}</button></td>` : "") + "</tr>").join("") + "</table>";
    },

    bind() {
      $("alert-filters").addEventListener("change", () => { view.offset = 0; alerts.refresh(); });
      $("alert-filters").addEventListener("submit", (ev) => { ev.preventDefault(); view.offset = 0; alerts.refresh(); });
      main.addEventListener("click", async (ev) => {
        const b = ev.target.closest("button");
        if (!b) return;
        if (b.dataset.alertAct === "ack") {
          const res = await call("POST", `/api/v1/alerts/${b.dataset.id}/ack`);
          message("alert-message", res.ok ? "ok" : "error", res.ok ? tr("acked_done") : `${tr("action_refused")}: ${why(res)}`);
          await alerts.refresh();
        } else if (b.dataset.alertAct === "silence") {
          view.detail = b.dataset.id;
          $("silence-box").hidden = false;
          $("silence-which").textContent = "#" + b.dataset.id;
          $("silence-reason").focus();
        } else if (b.dataset.overrideEdit) alerts.edit(b.dataset.overrideEdit);
        else if (b.dataset.overrideDelete) {
          const res = await call("DELETE", `/api/v1/alert-rules/${b.dataset.overrideDelete}`);
          message("rule-message", res.ok ? "ok" : "error", res.ok ? tr("deleted") : `${tr("action_refused")}: ${why(res)}`);
          await alerts.refresh();
        }
      });
      if (!view.data.can_act) return;
      $("silence-cancel").addEventListener("click", () => { $("silence-box").hidden = true; });
      $("silence-form").addEventListener("submit", (ev) => { ev.preventDefault(); alerts.silence(); });
      $("rf-rule").addEventListener("change", () => alerts.params());
      $("rule-form").addEventListener("submit", (ev) => { ev.preventDefault(); alerts.saveRule(); });
      alerts.params();
    },

    async silence() {
      const form = $("silence-form");
      const reason = $("silence-reason").value.trim();
      if (!reason) {  // required: the next operator must know why nobody was told
        form.querySelector('.field-error[data-for="reason"]').textContent = tr("silence_reason_required");
        return;
      }
      const q = query({ minutes: $("silence-minutes").value, reason });
      const res = await call("POST", `/api/v1/alerts/${view.detail}/silence?${q}`);
      if (res.ok) {
        $("silence-box").hidden = true;
        $("silence-reason").value = "";
        form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
        message("alert-message", "ok", tr("silenced_done").replace("{t}", time(res.json.silenced_until)));
        await alerts.refresh();
      } else if (!showFieldErrors(form, res)) {
        message("alert-message", "error", `${tr("action_refused")}: ${why(res)}`);
      }
    },

    async edit(id) {
      const rules = await call("GET", "/api/v1/alert-rules");
      const o = rules.ok && rules.json.overrides.find((x) => String(x.id) === String(id));
      if (!o) return;
      if (![...$("rf-scope").options].some((x) => x.value === o.scope)) return;
      $("rf-scope").value = o.scope; $("rf-scope-value").value = o.scope_value; $("rf-rule").value = o.rule;
      alerts.params();
      Object.entries(o.params).forEach(([k, v]) => {
        const el = document.querySelector(`#rf-params [data-param="${CSS.escape(k)}"]`);
        if (el) el.value = String(v);
      });
    },

    async saveRule() {
      const form = $("rule-form");
      const body = { scope: $("rf-scope").value, scope_value: $("rf-scope-value").value.trim(), rule: $("rf-rule").value, params: alerts.readParams() };
      const res = await call("PUT", "/api/v1/alert-rules", body);
      form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
      if (res.ok) { message("rule-message", "ok", tr("rule_saved")); await alerts.refresh(); return; }
      const placed = showFieldErrors(form, res);
      message("rule-message", "error", placed ? tr("form_invalid") : `${tr("action_refused")}: ${why(res)}`);
    },
  };

  // ---------------------------------------------------------------- dead letters
  const deadLetters = {
    skeleton() {
      return `<section><h2>${esc(tr("nav_dead_letters"))}</h2><form id="dl-filters" class="filters">` +
        `<label>${esc(tr("outlet"))} <input id="f-outlet" size="14"></label><label>${esc(tr("dl_reason"))} <input id="f-reason" size="14"></label>` +
        `<label>${esc(tr("dl_target"))} <input id="f-target" size="14"></label><label><input type="checkbox" id="f-replayed"> ${esc(tr("dl_include_replayed"))}</label></form>` +
        readOnly() + `<div id="dl-result"></div><div id="dl-list"></div></section><section id="dl-detail" hidden></section>`;
    },

    url() {
      return "/api/v1/dead-letters?" + query({
        outlet_id: $("f-outlet").value.trim(), reason: $("f-reason").value.trim(), target: $("f-target").value.trim(),
        include_replayed: $("f-replayed").checked ? "true" : "", limit: PAGE, offset: view.offset,
      });
    },

    async refresh() {
      const current = latest();
      const res = await call("GET", deadLetters.url());
      if (!current()) return;
      $("dl-list").innerHTML = res.ok ? deadLetters.table(res.json) + pager(res.json) : `<p class="error">${esc(tr("request_failed"))}: ${esc(why(res))}</p>`;
      if (view.detail) await deadLetters.show(view.detail);
    },

    table(rows) {
      if (!rows.length) return `<p class="muted" id="no-dead-letters">${esc(tr("none"))}</p>`;
      return `<table id="dl-table"><tr><th>ID</th><th>${esc(tr("outlet"))}</th><th>${esc(tr("tx_id"))}</th><th>${esc(tr("tx_kind"))}</th><th>${esc(tr("dl_target"))}</th>` +
        `<th>${esc(tr("dl_reason"))}</th><th>${esc(tr("dl_attempts"))}</th><th>${esc(tr("since"))}</th><th>${esc(tr("dl_replayed_at"))}</th><th></th></tr>` +
        rows.map((r) => `<tr data-dead-letter="${r.id}"><td>${r.id}</td><td>${outletLink(r.outlet_id)}</td><td>${esc(r.tx_id)}</td><td>${esc(r.tx_kind)}</td><td>${esc(r.target || "-")}</td>` +
          `<td>${esc(r.reason)} <span class="muted">${esc(r.detail || "")}</span></td><td>${r.attempts}</td><td>${time(r.created_at)}</td><td>${time(r.replayed_at)}</td>` +
          `<td><button type="button" data-dl-show="${r.id}">${esc(tr("details"))}</button></td></tr>`).join("") + "</table>";
    },

    async show(id) {
      const current = latestDetail();
      const res = await call("GET", `/api/v1/dead-letters/${encodeURIComponent(id)}`);
      if (!current()) return;
      const box = $("dl-detail");
      if (!res.ok) { box.hidden = true; view.detail = null; return; }
      const d = res.json;
      view.detail = id;
      box.hidden = false;
      const person = d.applicant ? `${esc(d.applicant.name)} · ${esc(d.applicant.id_number)}` : "-";
      const replay = view.data.can_act && !d.replayed_at ? `<p><button type="button" id="dl-replay" data-id="${d.id}">${esc(tr("dl_replay"))}</button></p>` : "";
      box.innerHTML = `<h2>${esc(tr("dl_one"))} ${d.id} <span class="muted">${esc(d.tx_id)}</span></h2><table>` +
        `<tr><th>${esc(tr("outlet"))}</th><td>${outletLink(d.outlet_id)}</td><th>${esc(tr("tx_state"))}</th><td id="dl-tx-state">${esc(tr("ts_" + d.transaction_state, d.transaction_state))}</td></tr>` +
        `<tr><th>${esc(tr("tx_item"))}</th><td>${esc(d.item_code || "-")}</td><th>${esc(tr("region"))}</th><td>${esc(d.region_code || "-")}</td></tr>` +
        `<tr><th>${esc(tr("tx_window"))}</th><td>${esc(d.window || "-")}</td><th>${esc(tr("tx_applicant"))}</th><td id="dl-applicant">${person}</td></tr>` +
        `<tr><th>${esc(tr("dl_reason"))}</th><td colspan="3">${esc(d.reason)} ${esc(d.detail || "")} ${d.status_code ? "HTTP " + d.status_code : ""}</td></tr></table>` +
        replay + attemptsTable(d.attempt_history);
    },

    bind() {
      $("dl-filters").addEventListener("change", () => { view.offset = 0; deadLetters.refresh(); });
      $("dl-filters").addEventListener("submit", (ev) => { ev.preventDefault(); view.offset = 0; deadLetters.refresh(); });
      main.addEventListener("click", async (ev) => {
        const b = ev.target.closest("button");
        if (!b) return;
        if (b.dataset.dlShow) await deadLetters.show(b.dataset.dlShow);
        else if (b.id === "dl-replay") {
          b.disabled = true;
          const res = await call("POST", `/api/v1/dead-letters/${b.dataset.id}/replay`);
          // The result stays on the page: the row leaves the list, its detail stays open.
          $("dl-result").innerHTML = res.ok
            ? `<p class="ok" id="replay-result">${esc(tr("dl_replayed").replace("{id}", res.json.id).replace("{tx}", res.json.tx_id))}</p>`
            : `<p class="error" id="replay-result">${esc(tr("action_refused"))}: ${esc(why(res))}</p>`;
          await deadLetters.refresh();
        }
      });
    },
  };

  function attemptsTable(rows) {
    if (!rows || !rows.length) return `<p class="muted">${esc(tr("dl_no_attempts"))}</p>`;
    return `<h3>${esc(tr("dl_attempts"))}</h3><table class="attempts"><tr><th>#</th><th>${esc(tr("dl_target"))}</th><th>${esc(tr("time"))}</th><th>${esc(tr("tx_outcome"))}</th><th>HTTP</th><th>${esc(tr("pb_error"))}</th></tr>` +
      rows.map((a) => `<tr><td>${a.attempt}</td><td>${esc(a.target || "-")}</td><td>${time(a.at)}</td><td>${esc(a.outcome)}</td><td>${esc(a.status_code ?? "")}</td><td>${esc(a.error || "")}</td></tr>`).join("") + "</table>";
  }

  // ---------------------------------------------------------------- transactions
  const transactions = {
    skeleton() {
      const states = ["pending", "delivered", "dead", "local"];
      return `<section><h2>${esc(tr("nav_transactions"))}</h2><form id="tx-filters" class="filters">` +
        `<label>${esc(tr("state"))} <select id="f-state"><option value="">${esc(tr("all"))}</option>${states.map((s) => `<option value="${s}">${esc(tr("ts_" + s, s))}</option>`).join("")}</select></label>` +
        `<label>${esc(tr("outlet"))} <input id="f-outlet" size="14"></label><label>${esc(tr("tx_kind"))} <input id="f-kind" size="12"></label>` +
        `<label>${esc(tr("from"))} <input type="date" id="f-since"></label><label>${esc(tr("to"))} <input type="date" id="f-until"></label></form>` +
        `<div id="tx-list"></div></section><section id="tx-detail" hidden></section>`;
    },

    url() {
      return "/api/v1/transactions?" + query({
        state: $("f-state").value, outlet_id: $("f-outlet").value.trim(), tx_kind: $("f-kind").value.trim(),
        since: isoDay($("f-since").value), until: isoDay($("f-until").value, 1), limit: PAGE, offset: view.offset,
      });
    },

    async refresh() {
      const current = latest();
      const res = await call("GET", transactions.url());
      if (!current()) return;
      $("tx-list").innerHTML = res.ok ? transactions.table(res.json) + pager(res.json) : `<p class="error">${esc(tr("request_failed"))}: ${esc(why(res))}</p>`;
      if (view.detail) await transactions.show(view.detail);
    },

    table(rows) {
      if (!rows.length) return `<p class="muted" id="no-transactions">${esc(tr("none"))}</p>`;
      return `<table id="tx-table"><tr><th>${esc(tr("tx_id"))}</th><th>${esc(tr("outlet"))}</th><th>${esc(tr("tx_kind"))}</th><th>${esc(tr("tx_item"))}</th><th>${esc(tr("state"))}</th>` +
        `<th>${esc(tr("dl_target"))}</th><th>${esc(tr("dl_attempts"))}</th><th>${esc(tr("tx_received"))}</th><th>${esc(tr("tx_case"))}</th><th></th></tr>` +
        rows.map((r) => `<tr data-tx="${esc(r.tx_id)}" data-tx-outlet="${esc(r.outlet_id)}"><td>${esc(r.tx_id)}</td><td>${outletLink(r.outlet_id)}</td><td>${esc(r.tx_kind)}</td><td>${esc(r.item_code || "-")}</td>` +
          `<td>${esc(tr("ts_" + r.state, r.state))}</td><td>${esc(r.target || "-")}</td><td>${r.attempts}</td><td>${time(r.received_at)}</td><td>${esc(r.case_number || "")}</td>` +
          `<td><button type="button" data-tx-show="${esc(JSON.stringify([r.outlet_id, r.tx_id]))}">${esc(tr("details"))}</button></td></tr>`).join("") + "</table>";
    },

    async show(key) {
      const [outlet, tx] = JSON.parse(key);
      const current = latestDetail();
      const res = await call("GET", `/api/v1/outlets/${encodeURIComponent(outlet)}/transactions/${encodeURIComponent(tx)}`);
      if (!current()) return;
      const box = $("tx-detail");
      if (!res.ok) { box.hidden = true; view.detail = null; return; }
      const d = res.json;
      view.detail = key;
      box.hidden = false;
      box.innerHTML = `<h2>${esc(tr("tx_one"))} ${esc(d.tx_id)}</h2><table>` +
        `<tr><th>${esc(tr("outlet"))}</th><td>${outletLink(d.outlet_id)}</td><th>${esc(tr("state"))}</th><td id="tx-state">${esc(tr("ts_" + d.state, d.state))}</td></tr>` +
        `<tr><th>${esc(tr("tx_kind"))}</th><td>${esc(d.tx_kind)}</td><th>${esc(tr("tx_item"))}</th><td>${esc(d.item_code || "-")}</td></tr>` +
        `<tr><th>${esc(tr("region"))}</th><td>${esc(d.region_code || "-")}</td><th>${esc(tr("tx_window"))}</th><td>${esc(d.window || "-")}</td></tr>` +
        `<tr><th>${esc(tr("tx_received"))}</th><td>${time(d.received_at)}</td><th>${esc(tr("tx_delivered"))}</th><td>${time(d.delivered_at)}</td></tr>` +
        `<tr><th>${esc(tr("tx_case"))}</th><td>${esc(d.case_number || "-")}</td><th>${esc(tr("pb_error"))}</th><td>${esc(d.last_error || "-")}</td></tr></table>` +
        `<p class="muted">${esc(tr("tx_no_body"))}</p>` + attemptsTable(d.history);
    },

    bind() {
      $("tx-filters").addEventListener("change", () => { view.offset = 0; transactions.refresh(); });
      $("tx-filters").addEventListener("submit", (ev) => { ev.preventDefault(); view.offset = 0; transactions.refresh(); });
      main.addEventListener("click", async (ev) => {
        const b = ev.target.closest("button[data-tx-show]");
        if (b) await transactions.show(b.dataset.txShow);
      });
    },
  };

  // ---------------------------------------------------------------- rectifications
  const rectifications = {
    skeleton() {
      const tabs = ["open", "overdue", "closed", "all"];
      return `<section><h2>${esc(tr("nav_rectifications"))}</h2><form id="rect-filters" class="filters">` +
        tabs.map((s) => `<label><input type="radio" name="rect-view" value="${s}"${s === "open" ? " checked" : ""}> ${esc(tr("rv_" + s))}</label>`).join(" ") +
        ` <label>${esc(tr("outlet"))} <input id="f-outlet" size="14"></label></form>` + readOnly() +
        `<div id="rect-list"></div></section><section id="rect-detail" hidden></section>`;
    },

    url() {
      const v = document.querySelector("input[name=rect-view]:checked").value;
      const q = { outlet: $("f-outlet").value.trim() };
      if (v === "open" || v === "closed") q.status = v;
      if (v === "overdue") q.overdue = "true";
      return "/api/v1/rectifications?" + query({ ...q, limit: PAGE, offset: view.offset });
    },

    async refresh() {
      const current = latest();
      let res = await call("GET", rectifications.url());
      if (!current()) return;
      if (res.ok && !res.json.items.length && view.offset > 0) {  // the last page emptied meanwhile
        view.offset = Math.max(0, (Math.ceil(res.json.total / PAGE) - 1) * PAGE);
        res = await call("GET", rectifications.url());
        if (!current()) return;
      }
      $("rect-list").innerHTML = res.ok ? rectifications.table(res.json.items) + totalPager(res.json) : `<p class="error">${esc(tr("request_failed"))}: ${esc(why(res))}</p>`;
      view.rows = res.ok ? res.json.items : [];
      if (view.detail) rectifications.showDetail();
    },

    table(rows) {
      if (!rows.length) return `<p class="muted" id="no-rectifications">${esc(tr("none"))}</p>`;
      return `<table id="rect-table"><tr><th>ID</th><th>${esc(tr("outlet"))}</th><th>${esc(tr("tx_window"))}</th><th>${esc(tr("rx_stars"))}</th><th>${esc(tr("tx_case"))}</th>` +
        `<th>${esc(tr("rx_opened"))}</th><th>${esc(tr("rx_deadline"))}</th><th>${esc(tr("state"))}</th><th>${esc(tr("rx_follow_ups"))}</th><th></th></tr>` +
        rows.map((r) => `<tr data-rectification="${r.id}" data-overdue="${r.overdue}"><td>${r.id}</td><td>${outletLink(r.outlet_id)}</td><td>${esc(r.window || "-")}</td><td>${esc(r.stars ?? "-")}</td><td>${esc(r.case_number || "")}</td>` +
          `<td>${time(r.opened_at)}</td><td>${time(r.deadline_at)}</td><td>${esc(tr("rs_" + r.status, r.status))}${r.overdue ? ` <b class="warn">${esc(tr("rv_overdue"))}</b>` : ""}</td>` +
          `<td>${r.follow_ups.length}</td><td><button type="button" data-rect-show="${r.id}">${esc(tr("details"))}</button></td></tr>`).join("") + "</table>";
    },

    // The follow-ups are redrawn on changes; the form under them is drawn once per ticket
    // so a note being typed survives another operator's change.
    async showDetail() {
      const listed = (view.rows || []).find((x) => String(x.id) === String(view.detail));
      // Not on this page any more (closed meanwhile, or paged away): the last known state.
      if (listed) view.detailRow = listed;
      const r = view.detailRow && String(view.detailRow.id) === String(view.detail) ? view.detailRow : null;
      const box = $("rect-detail");
      if (!r) { box.hidden = true; view.detail = null; return; }
      box.hidden = false;
      if (box.dataset.id !== String(r.id)) {
        box.dataset.id = String(r.id);
        box.innerHTML = `<h2>${esc(tr("rx_one"))} ${r.id} <span class="muted">${esc(r.outlet_id)}</span></h2><div id="rect-follow-ups"></div>` +
          `<div id="rect-form-slot"></div><div id="rect-message"></div>`;
      }
      $("rect-follow-ups").innerHTML = rectifications.followUps(r);
      const slot = $("rect-form-slot");
      if (r.status !== "open" || !view.data.can_act) slot.innerHTML = "";
      else if (!slot.firstChild) slot.innerHTML = rectifications.form();
    },

    followUps(r) {
      if (!r.follow_ups.length) return `<p class="muted">${esc(tr("rx_no_follow_ups"))}</p>`;
      return `<table id="follow-ups"><tr><th>${esc(tr("time"))}</th><th>${esc(tr("rx_action"))}</th><th>${esc(tr("rx_note"))}</th><th>${esc(tr("rx_by"))}</th><th></th></tr>` +
        r.follow_ups.map((f) => `<tr data-follow-up="${f.id}"><td>${time(f.at)}</td><td>${esc(tr("fa_" + f.action, f.action))}</td><td>${esc(f.note)}</td><td>${esc(f.by)}</td><td>${f.closes ? esc(tr("rx_closed_it")) : ""}</td></tr>`).join("") + "</table>";
    },

    form() {
      return `<form id="follow-up-form"><h3>${esc(tr("rx_add"))}</h3>` +
        `<label>${esc(tr("rx_action"))} <select id="fu-action" name="action">${view.data.actions.map((a) => `<option value="${esc(a)}">${esc(tr("fa_" + a, a))}</option>`).join("")}</select></label> ${field("action")}<br>` +
        `<label>${esc(tr("rx_note"))}<br><textarea id="fu-note" name="note" rows="3" cols="60" maxlength="4000"></textarea></label> ${field("note")}<br>` +
        `<label>${esc(tr("rx_by"))} <input id="fu-by" name="by" size="20" maxlength="128" value="${esc(h.userName)}"></label> ${field("by")} ` +
        `<label><input type="checkbox" id="fu-closes" name="closes"> ${esc(tr("rx_closes"))}</label> ` +
        `<button type="submit" id="fu-save">${esc(tr("save"))}</button></form>`;
    },

    async save() {
      const form = $("follow-up-form");
      const body = { action: $("fu-action").value, note: $("fu-note").value.trim(), by: $("fu-by").value.trim(), closes: $("fu-closes").checked };
      const res = await call("POST", `/api/v1/rectifications/${view.detail}/follow-up`, body);
      form.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; });
      if (res.ok) {
        view.detailRow = res.json;  // the ticket as recorded, even if it leaves this list
        $("fu-note").value = "";
        message("rect-message", "ok", tr("rx_recorded"));
        if (res.json.status !== "open") $("rect-form-slot").innerHTML = "";
        await rectifications.refresh();
        return;
      }
      const placed = showFieldErrors(form, res);
      message("rect-message", "error", placed ? tr("form_invalid") : `${tr("action_refused")}: ${why(res)}`);
    },

    bind() {
      $("rect-filters").addEventListener("change", () => { view.offset = 0; rectifications.refresh(); });
      $("rect-filters").addEventListener("submit", (ev) => { ev.preventDefault(); view.offset = 0; rectifications.refresh(); });
      main.addEventListener("click", async (ev) => {
        const b = ev.target.closest("button[data-rect-show]");
        if (!b) return;
        view.detail = b.dataset.rectShow;
        $("rect-message") && message("rect-message", "", "");
        await rectifications.showDetail();
      });
      main.addEventListener("submit", (ev) => {
        if (ev.target.id !== "follow-up-form") return;
        ev.preventDefault();
        rectifications.save();
      });
    },
  };

  const pages = { alerts, "dead-letters": deadLetters, transactions, rectifications };
  const main = document.getElementById("main");

  return {
    pages: Object.keys(pages),
    mount(page, data) {
      view.page = pages[page];
      view.data = data;
      main.innerHTML = view.page.skeleton(data);
      view.page.bind();
      main.addEventListener("click", (ev) => {
        const b = ev.target.closest("button");
        if (!b || (b.id !== "prev-page" && b.id !== "next-page")) return;
        view.offset = Math.max(0, view.offset + (b.id === "next-page" ? PAGE : -PAGE));
        view.page.refresh();
      });
      return view.page.refresh();
    },
    refresh() { return view.page.refresh(); },
  };
};
