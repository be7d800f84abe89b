// govedge operator UI, update campaigns: the /ui/campaigns list and one campaign's page
// (waves with progress bars, counts, outlets by state, pause/resume/abort). The data
// comes from the campaign API (/api/v1/campaigns), read again every 2 s while the page
// is open and on every server-sent change. app.js hands in its helpers.
"use strict";
window.govedgeCampaigns = function (h) {
  const { esc, tr, time, call } = h;
  const $ = (id) => document.getElementById(id);
  const STATES = ["pending", "scheduled", "downloading", "verifying", "installing", "restarting", "healthy", "failed", "rolled_back", "skipped"];
  const DONE = ["healthy", "failed", "rolled_back", "skipped"];
  const BAD = ["failed", "rolled_back", "skipped"];
  const MOVING = ["downloading", "verifying", "installing", "restarting"];
  const sum = (counts, states) => states.reduce((n, s) => n + (counts[s] || 0), 0);
  const total = (counts) => Object.values(counts || {}).reduce((n, v) => n + v, 0);
  const cstate = (s) => `<span class="st cps-${esc(s)}" data-campaign-state="${esc(s)}">${esc(tr("cp_" + s, s))}</span>`;
  const ostate = (s) => `<span class="ost ost-${esc(s)}">${esc(tr("os_" + s, s))}</span>`;
  const view = { id: null, canWrite: false, filter: "", campaign: null, timer: null };

  // One bar: healthy green, failed/rolled back/skipped red, installing blue, rest grey.
  function bar(counts, size) {
    const n = size || total(counts) || 1;
    const part = (states, cls) => {
      const w = (100 * sum(counts, states)) / n;
      return w > 0 ? `<span class="${cls}" style="width:${w.toFixed(2)}%"></span>` : "";
    };
    return `<span class="bar">${part(["healthy"], "b-ok")}${part(BAD, "b-bad")}${part(MOVING, "b-busy")}</span>` +
      ` <span class="muted">${sum(counts, DONE)}/${size ?? total(counts)}</span>`;
  }

  function countsText(counts) {
    const parts = STATES.filter((s) => counts[s]).map((s) => `${ostate(s)} ${counts[s]}`);
    return parts.length ? parts.join(" ") : `<span class="muted">${esc(tr("none"))}</span>`;
  }

  // ---- the list ----
  function listHtml(rows) {
    if (!rows.length) return `<section><h2>${esc(tr("campaigns"))}</h2><p class="muted">${esc(tr("none"))}</p></section>`;
    return `<section><h2>${esc(tr("campaigns"))}</h2><table id="campaign-list"><tr><th>ID</th><th>${esc(tr("cp_name"))}</th><th>${esc(tr("cp_release"))}</th>` +
      `<th>${esc(tr("state"))}</th><th>${esc(tr("cp_progress"))}</th><th>${esc(tr("cp_created"))}</th></tr>` +
      rows.map((c) => `<tr data-campaign="${esc(c.id)}"><td><a href="/ui/campaigns/${encodeURIComponent(c.id)}">${esc(c.id)}</a></td><td>${esc(c.name || "")}</td>` +
        `<td>${esc(c.release)}</td><td>${cstate(c.state)}</td><td>${bar(c.counts || {})}</td><td>${time(c.created_at)} · ${esc(c.created_by || "")}</td></tr>`).join("") +
      "</table></section>";
  }

  // ---- one campaign ----
  function skeleton() {
    const opts = [`<option value="">${esc(tr("cp_all_states"))}</option>`].concat(
      STATES.map((s) => `<option value="${s}">${esc(tr("os_" + s, s))}</option>`)).join("");
    return `<section id="campaign-head"></section><section><h2>${esc(tr("cp_waves"))}</h2><div id="waves"></div></section>` +
      `<section><h2>${esc(tr("outlets"))} <select id="state-filter">${opts}</select></h2><div id="outlets"></div></section>`;
  }

  function headHtml(c) {
    const s = c.settings || {};
    const actions = !view.canWrite ? `<p class="muted" id="read-only">${esc(tr("cp_read_only"))}</p>` :
      `<p class="cp-actions"><input id="cp-reason" placeholder="${esc(tr("cp_reason"))}" maxlength="200">` +
      (c.state === "running" ? ` <button type="button" id="btn-pause">${esc(tr("cp_pause"))}</button>` : "") +
      (c.state === "paused" ? ` <input id="cp-release" placeholder="${esc(tr("cp_fixed_release"))}" maxlength="64"> <button type="button" id="btn-resume">${esc(tr("cp_resume"))}</button>` : "") +
      (c.state === "running" || c.state === "paused" ? ` <button type="button" id="btn-abort">${esc(tr("cp_abort"))}</button>` : "") + "</p>";
    return `<h2>${esc(tr("campaign"))} ${esc(c.id)} ${esc(c.name || "")} → <code id="cp-release-now">${esc(c.release)}</code> ${cstate(c.state)}</h2>` +
      (c.state_reason ? `<p class="warn" id="state-reason">${esc(c.state_reason)}</p>` : "") +
      `<p class="muted">${esc(tr("cp_created"))}: ${time(c.created_at)} · ${esc(c.created_by || "")} · ${esc(tr("cp_thresholds"))}: ` +
      `${esc(s.success_threshold ?? "-")} / ${esc(s.failure_threshold ?? "-")} · ${esc(tr("cp_concurrency"))}: ${esc(s.concurrency ?? "-")}</p>` +
      `<p>${bar(c.counts || {})} ${countsText(c.counts || {})}</p>${actions}<div id="cp-message"></div>`;
  }

  function wavesHtml(c) {
    return `<table id="wave-table"><tr><th>${esc(tr("cp_wave"))}</th><th>${esc(tr("cp_size"))}</th><th>${esc(tr("state"))}</th><th>${esc(tr("cp_progress"))}</th><th></th><th>${esc(tr("since"))}</th></tr>` +
      (c.waves || []).map((w) => `<tr data-wave="${esc(w.index)}"><td>${esc(w.index)}</td><td>${esc(w.size)}</td><td>${esc(tr("ws_" + w.state, w.state))}</td>` +
        `<td>${bar(w.counts || {}, w.size)}</td><td>${countsText(w.counts || {})}</td><td>${time(w.started_at)}</td></tr>`).join("") + "</table>";
  }

  function outletsHtml(page) {
    if (!page.outlets.length) return `<p class="muted">${esc(tr("none"))}</p>`;
    return `<p class="muted">${esc(tr("cp_shown"))} ${page.outlets.length} / ${page.total}</p><table id="outlet-table"><tr><th>${esc(tr("outlet"))}</th><th>${esc(tr("cp_wave"))}</th>` +
      `<th>${esc(tr("state"))}</th><th>${esc(tr("since"))}</th><th>${esc(tr("cp_reason_col"))}</th><th>${esc(tr("cp_from"))}</th></tr>` +
      page.outlets.map((o) => `<tr data-outlet="${esc(o.outlet_id)}"><td><a href="/ui/outlets/${encodeURIComponent(o.outlet_id)}">${esc(o.outlet_id)}</a></td>` +
        `<td>${esc(o.wave)}</td><td>${ostate(o.state)}</td><td>${time(o.since)}</td><td>${esc(o.reason ? tr("rc_" + o.reason, o.reason) : "")}` +
        `${o.detail ? ` <span class="muted">${esc(o.detail)}</span>` : ""}</td><td>${esc(o.from_version || "")}</td></tr>`).join("") + "</table>";
  }

  function message(html) { const m = $("cp-message"); if (m) m.innerHTML = html; }

  async function steer(action) {
    const body = {};
    const reason = ($("cp-reason") || {}).value;
    if (reason && reason.trim()) body.reason = reason.trim();
    const release = ($("cp-release") || {}).value;
    if (action === "resume" && release && release.trim()) body.release = release.trim();
    const res = await call("POST", `/api/v1/campaigns/${encodeURIComponent(view.id)}/${action}`, body);
    await refresh();
    if (res.ok) { message(`<p class="ok" id="cp-done">${esc(tr("cp_done_" + action))}</p>`); return; }
    const detail = res.json && res.json.detail;
    const why = typeof detail === "string" ? detail : (detail ? JSON.stringify(detail) : "");
    message(`<p class="error" id="cp-refused">${esc(tr("cp_refused"))} (${res.status})${why ? ": " + esc(why) : ""}</p>`);
  }

  async function refresh() {
    if (view.id === null) {
      const res = await call("GET", "/api/v1/campaigns");
      if (res.ok) document.getElementById("main").innerHTML = listHtml(res.json);
      return;
    }
    const base = `/api/v1/campaigns/${encodeURIComponent(view.id)}`;
    const res = await call("GET", base);
    if (!res.ok) { $("campaign-head").innerHTML = `<p class="error">${esc(tr("request_failed"))} (${res.status})</p>`; return; }
    const c = res.json;
    // Keep what the operator is typing: the head is redrawn only when the campaign moved.
    const key = JSON.stringify([c.state, c.state_reason, c.release, c.counts]);
    if (key !== view.key) {
      const kept = $("cp-message") ? $("cp-message").innerHTML : "";
      const reason = $("cp-reason") ? $("cp-reason").value : "";
      $("campaign-head").innerHTML = headHtml(c);
      if ($("cp-reason")) $("cp-reason").value = reason;
      message(kept);
      view.key = key;
    }
    $("waves").innerHTML = wavesHtml(c);
    const q = `?limit=200${view.filter ? "&state=" + encodeURIComponent(view.filter) : ""}`;
    const out = await call("GET", base + "/outlets" + q);
    if (out.ok) $("outlets").innerHTML = outletsHtml(out.json);
    document.getElementById("main").dataset.campaignState = c.state;
  }

  function mount(boot) {
    view.id = boot.campaign_id ?? null;
    view.canWrite = !!boot.can_write;
    const main = document.getElementById("main");
    if (view.id !== null) {
      main.innerHTML = skeleton();
      $("state-filter").addEventListener("change", (ev) => { view.filter = ev.target.value; refresh(); });
      main.addEventListener("click", (ev) => {
        const b = ev.target.closest("button");
        if (!b) return;
        if (b.id === "btn-pause") steer("pause");
        else if (b.id === "btn-resume") steer("resume");
        else if (b.id === "btn-abort") steer("abort");
      });
    }
    refresh();
    view.timer = setInterval(refresh, 2000);
  }

  return { mount, refresh };
};
