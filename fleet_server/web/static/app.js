// govedge operator UI: renders the page's data, refetches on server-sent "change" events.
// Vanilla JS, no dependencies, nothing loaded from the internet.
"use strict";
(function () {
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const t = boot.t;
  const main = document.getElementById("main");
  let data = boot.data;
  // Actions the signed-in user's role allows (docs/security.md); others are not shown.
  const canActOnAlerts = Boolean(boot.user && boot.user.can_act_on_alerts);

  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const tr = (key, fallback) => t[key] ?? fallback ?? key;
  const st = (s) => `<span class="st st-${esc(s)}" data-state="${esc(s)}">${esc(tr(s))}</span>`;
  const kind = (k) => (k ? esc(tr("k_" + k, k)) : "-");
  const time = (iso) => (iso ? new Date(iso).toLocaleString(boot.lang === "zh" ? "zh-CN" : "en-GB") : "-");
  // Each page module's script is on the pages that use it only (fleet_server/web/ui.py).
  const cfg = window.govedgeConfig ? window.govedgeConfig({ esc, tr, time, refresh: () => refresh() }) : null;
  // One JSON call for the page modules: {status, ok, json} (json null when not JSON).
  async function call(method, url, body) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) { init.headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    const r = await fetch(url, init);
    let answer = null;
    try { answer = await r.json(); } catch (e) { answer = null; }
    return { status: r.status, ok: r.ok, json: answer };
  }
  const camp = window.govedgeCampaigns ? window.govedgeCampaigns({ esc, tr, time, call }) : null;
  const isCampaigns = boot.page === "campaigns" || boot.page === "campaign";
  const pbk = window.govedgePlaybooks ? window.govedgePlaybooks({ esc, tr, time, call }) : null;
  const isPlaybooks = boot.page === "playbook-runs" || boot.page === "playbook-run";
  const ops = window.govedgeOps ? window.govedgeOps({ esc, tr, time, call, alertSubject, userName: (boot.user && boot.user.name) || "" }) : null;
  const isOps = Boolean(ops && ops.pages.includes(boot.page));  // ops.js reads its APIs itself
  // Pages drawn by a script of their own (registry.js: outlets list and admin pages).
  const own = window.govedgeRegistry ? window.govedgeRegistry({ esc, tr, time, st, boot }).pages[boot.page] : null;
  const pct = (v) => (v === null || v === undefined ? "-" : (v * 100).toFixed(1) + "%");

  function spark(values, w = 160, h = 28) {
    const nums = values.filter((v) => typeof v === "number");
    if (nums.length < 2) return `<span class="muted">${esc(tr("no_data"))}</span>`;
    const lo = Math.min(...nums), hi = Math.max(...nums), span = hi - lo || 1;
    const pts = nums.map((v, i) => `${((i / (nums.length - 1)) * w).toFixed(1)},${(h - 2 - ((v - lo) / span) * (h - 4)).toFixed(1)}`).join(" ");
    return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><polyline fill="none" stroke="#12355b" stroke-width="1.5" points="${pts}"/></svg> <span class="muted">${nums[nums.length - 1]}</span>`;
  }

  // Fleet-wide alerts are filed under the pseudo-outlet "_fleet" (CAMPAIGN_OUTLET,
  // fleet_server/campaigns/alerting.py), which has no page: a paused campaign links to its
  // campaign, anything else (an upstream breaker, device "target:NAME") names the fleet.
  function alertSubject(a) {
    if (a.outlet_id !== "_fleet") return `<a href="/ui/outlets/${encodeURIComponent(a.outlet_id)}">${esc(a.outlet_id)}</a>`;
    const campaign = /^campaign:(\d+)$/.exec(a.device_id || "");
    if (campaign) return `<a href="/ui/campaigns/${campaign[1]}" data-fleet-alert="campaign">${esc(tr("alert_campaign"))} ${campaign[1]}</a>`;
    return `<span class="muted" data-fleet-alert="fleet">${esc(tr("alert_fleet_wide"))}</span>`;
  }

  function alertsTable(alerts, withActions) {
    if (!alerts.length) return `<p class="muted">${esc(tr("none"))}</p>`;
    return `<table><tr><th>${tr("rule")}</th><th>${tr("outlet")}</th><th>${tr("device")}</th><th>${tr("severity")}</th><th>${tr("summary")}</th><th>${tr("since")}</th><th>${tr("acked")}</th>${withActions ? "<th></th>" : ""}</tr>` +
      alerts.map((a) => `<tr data-alert="${a.id}"><td>${esc(tr("r_" + a.rule, a.rule))}</td><td>${alertSubject(a)}</td><td>${esc(a.device_id || "")}</td>` +
        `<td class="sev-${esc(a.severity)}">${esc(a.severity)}</td><td>${esc(a.summary)}</td><td>${time(a.opened_at)}</td><td>${a.acked_by ? esc(a.acked_by) : ""}</td>` +
        (withActions ? `<td><button data-act="ack" data-id="${a.id}">${tr("ack")}</button> <a class="silence-link" href="/ui/alerts">${tr("silence")}</a></td>` : "") + "</tr>").join("") + "</table>";
  }

  function countsTable(rows, keyName, label, fmt) {
    return `<table><tr><th>${label}</th><th>${tr("online")}</th><th>${tr("offline")}</th><th>${tr("stale")}</th><th>${tr("unknown")}</th></tr>` +
      rows.map((r) => `<tr><td>${fmt(r)}</td><td>${r.online || 0}</td><td>${r.offline || 0}</td><td>${r.stale || 0}</td><td>${r.unknown || 0}</td></tr>`).join("") + "</table>";
  }

  // The policy figures (fleet_server/health/figures.py): totals against their targets,
  // then one row per group; links choose the grouping and the period.
  const FIGURES = [
    ["active_evaluation_rate", "active_rate"], ["satisfaction_rate", "satisfaction"],
    ["follow_up_rate", "follow_up_rate"], ["on_time_rectification_rate", "on_time_rate"],
    ["nearby_coverage", "nearby_coverage"], ["kiosk_coverage", "kiosk_coverage"],
    ["item_target_rate", "item_target_rate"],
  ];
  function figureCell(value, target) {
    const missed = target !== undefined && value !== null && value < target;
    return `<span class="${missed ? "sev-warning" : ""}">${pct(value)}</span>`;
  }
  function figuresSection(d) {
    const f = d.figures;
    if (!f) return "";
    const link = (by, days, label, on) => `<a href="/ui/evaluations?by=${by}&days=${days}"${on ? ' class="on"' : ""} data-by="${by}" data-days="${days}">${esc(label)}</a>`;
    const groupName = (key) => (d.by === "kind" ? kind(key === "-" ? "" : key) : esc(key));
    const controls = `<p class="muted">${tr("group_by")}: ` +
      [["kind", tr("by_kind")], ["region", tr("by_region")], ["outlet", tr("by_outlet")]].map(([by, label]) => link(by, d.days, label, d.by === by)).join(" · ") +
      ` — ${tr("window_days")}: ` + [7, 30, 90].map((n) => link(d.by, n, String(n), d.days === n)).join(" · ") + "</p>";
    const cards = `<div class="cards" id="figure-totals">` + FIGURES.map(([key, label]) =>
      `<div class="card" data-figure="${key}">${tr(label)}<b>${figureCell(f.total[key], f.targets[key])}</b>` +
      (f.targets[key] !== undefined ? `<span class="muted">${tr("target")} ${pct(f.targets[key])}</span>` : "") + "</div>").join("") +
      `<div class="card" data-figure="service_items_per_outlet">${tr("items_per_outlet")}<b>${f.total.service_items_per_outlet ?? "-"}</b></div></div>`;
    const table = `<table id="figure-rows"><tr><th>${tr("group")}</th><th>${tr("outlets")}</th><th>${tr("cases")}</th>` + FIGURES.map(([, label]) => `<th>${tr(label)}</th>`).join("") + `<th>${tr("items_per_outlet")}</th></tr>` +
      f.rows.map((r) => `<tr data-group="${esc(r.key)}"><td>${groupName(r.key)}</td><td>${r.outlets}</td><td>${r.cases}</td>` +
        FIGURES.map(([key]) => `<td data-figure="${key}">${figureCell(r[key], f.targets[key])}</td>`).join("") + `<td>${r.service_items_per_outlet ?? "-"}</td></tr>`).join("") + "</table>";
    return `<section id="figures"><h2>${tr("policy_figures")} <span class="muted">${tr("window_days")}: ${d.days}</span></h2>${controls}${cards}${table}</section>`;
  }

  const render = {
    overview(d) {
      const s = d.by_state || {};
      return `<div class="cards"><div class="card">${tr("outlets")}<b id="n-outlets">${d.outlets}</b></div>` +
        ["online", "offline", "stale"].map((k) => `<div class="card">${st(k)}<b id="n-${k}">${s[k] || 0}</b></div>`).join("") +
        `<div class="card">${tr("open_alerts")}<b id="n-alerts">${d.open_alerts.length}</b></div></div>` +
        `<section><h2>${tr("by_region")}</h2>${countsTable(d.by_region, "region_code", tr("region"), (r) => esc(r.name) + ` <span class="muted">${esc(r.region_code)}</span>`)}</section>` +
        `<section><h2>${tr("by_kind")}</h2>${countsTable(d.by_kind, "kind", tr("kind"), (r) => kind(r.kind === "-" ? "" : r.kind))}</section>` +
        `<section><h2>${tr("open_alerts")}</h2>${alertsTable(d.open_alerts, canActOnAlerts)}</section>` +
        `<section><h2>${tr("devices_in_trouble")}</h2>` + (d.devices_in_trouble.length ? `<table><tr><th>${tr("outlet")}</th><th>${tr("device")}</th><th>${tr("kind")}</th><th>${tr("state")}</th><th>${tr("since")}</th></tr>` +
          d.devices_in_trouble.map((x) => `<tr><td><a href="/ui/outlets/${encodeURIComponent(x.outlet_id)}">${esc(x.outlet_id)}</a></td><td>${esc(x.device_id)}</td><td>${esc(x.kind)}</td><td>${st(x.state)}${x.health && x.health.paper && x.health.paper !== "ok" ? " paper:" + esc(x.health.paper) : ""}</td><td>${time(x.state_since)}</td></tr>`).join("") + "</table>" : `<p class="muted">${tr("none")}</p>`) + "</section>";
    },

    // The points are GET /api/v1/fleet/map-points ({id, lat, lon, state}, fetched by
    // refresh()); names and kinds come along only for a fleet small enough to label.
    map(d) {
      if (!d.points) return `<p class="muted" id="map-loading">${esc(tr("nav_map"))}…</p>`;
      const labels = d.labels || {};
      const placed = d.points;
      const rings = [];
      (d.regions || []).forEach((r) => (r.outline || []).forEach((ring) => rings.push({ r, ring })));
      const lons = placed.map((o) => o.lon).concat(rings.flatMap((x) => x.ring.map((p) => p[0])));
      const lats = placed.map((o) => o.lat).concat(rings.flatMap((x) => x.ring.map((p) => p[1])));
      const W = 900, H = 560, pad = 30;
      let svg = "";
      if (lons.length) {
        // A loop, not Math.min(...lons): spreading 10,000 arguments is near the engine's limit.
        let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
        lons.forEach((v) => { if (v < x0) x0 = v; if (v > x1) x1 = v; });
        lats.forEach((v) => { if (v < y0) y0 = v; if (v > y1) y1 = v; });
        const midLat = ((y0 + y1) / 2) * Math.PI / 180, kx = Math.cos(midLat);  // plain equirectangular
        const sx = (x1 - x0) * kx || 0.01, sy = y1 - y0 || 0.01;
        const scale = Math.min((W - 2 * pad) / sx, (H - 2 * pad) / sy);
        const px = (lon) => pad + (lon - x0) * kx * scale, py = (lat) => H - pad - (lat - y0) * scale;
        svg += rings.map((x) => `<polygon class="region" points="${x.ring.map((p) => px(p[0]).toFixed(1) + "," + py(p[1]).toFixed(1)).join(" ")}"><title>${esc(x.r.name)}</title></polygon>`).join("");
        const color = { online: "#2e7d32", offline: "#c62828", stale: "#ef8f00", unknown: "#78909c" };
        const small = placed.length > 1000;  // thousands of points: smaller dots
        svg += placed.map((o) => {
          const label = labels[o.id], name = label ? label.name : o.id;
          const r = small ? 3 : label && label.kind === "kiosk" ? 5 : 7;
          return `<circle data-outlet="${esc(o.id)}" data-state="${esc(o.state)}" cx="${px(o.lon).toFixed(1)}" cy="${py(o.lat).toFixed(1)}" r="${r}" fill="${color[o.state] || "#78909c"}"><title>${esc(name)}</title></circle>` +
            (label ? `<text x="${(px(o.lon) + 9).toFixed(1)}" y="${(py(o.lat) + 4).toFixed(1)}">${esc(name)}</text>` : "");
        }).join("");
      }
      const missing = d.unplaced || [];
      const more = (d.unplaced_total || 0) - missing.length;
      return `<div class="map-wrap"><svg id="map" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(tr("nav_map"))}">${svg}</svg><section id="detail"><p class="muted">${esc(tr("nav_map"))}: ${placed.length} ${esc(tr("outlets"))}</p></section></div>` +
        (missing.length ? `<section id="unplaced"><h2>${tr("no_coords")}</h2>${missing.map((o) => `<a href="/ui/outlets/${encodeURIComponent(o.outlet_id)}">${esc(o.name)}</a> ${st(o.state)}`).join(" · ")}` +
          (more > 0 ? ` · <a href="/ui/outlets">+${more}</a>` : "") + "</section>" : "");
    },

    outlet(d) {
      const m = d.last_metrics || {};
      const hist = d.history || [];
      const series = (name) => hist.map((h) => h.metrics[name]);
      const devSeries = (dev, name) => hist.map((h) => (h.devices[dev] || {})[name]);
      return `<h2>${esc(d.name)} <span class="muted">${esc(d.outlet_id)}</span> <span id="outlet-state">${st(d.state)}</span></h2>` +
        `<div class="cards"><div class="card">${tr("kind")}<b>${kind(d.kind)}</b></div><div class="card">${tr("agent_version")}<b>${esc(d.agent_version || "-")}</b></div>` +
        `<div class="card">${tr("config_version")}<b>${esc(d.config_version ?? "-")}</b></div><div class="card">${tr("tx_waiting")}<b>${d.transactions_waiting}</b></div>` +
        `<div class="card">${tr("clock_skew")}<b>${d.clock_skew_s ?? "-"}</b></div></div>` +
        `<section><table><tr><th>${tr("last_seen")}</th><td>${time(d.last_seen)}</td><th>${tr("opening_hours")}</th><td>${esc(d.opening_hours_text)}</td></tr>` +
        `<tr><th>${tr("address")}</th><td>${esc(d.address || "-")}</td><th>${tr("service_items")}</th><td>${esc((d.service_items || []).join("、") || "-")}</td></tr></table></section>` +
        `<section><h2>${tr("history")}</h2><table>` + ["cpu_percent", "mem_used_percent", "disk_used_percent", "outbox_oldest_age_s"].map((k) => `<tr><th>${k}</th><td>${spark(series(k))}</td><td class="muted">${esc(m[k] ?? "")}</td></tr>`).join("") + "</table></section>" +
        `<section><h2>${tr("devices")}</h2>` + (d.devices.length ? `<table><tr><th>${tr("device")}</th><th>${tr("kind")}</th><th>${tr("state")}</th><th>${tr("firmware")}</th><th>${tr("errors")}</th><th>${tr("health")}</th><th>${tr("history")}</th></tr>` +
          d.devices.map((x) => `<tr data-device="${esc(x.device_id)}"><td>${esc(x.device_id)}</td><td>${esc(x.kind || "")} ${esc(x.model || "")}</td><td>${st(x.state)}</td><td>${esc(x.firmware || "-")}</td><td>${x.error_count}</td>` +
            `<td class="muted">${esc(Object.entries(x.health || {}).slice(0, 6).map(([k, v]) => k + "=" + v).join(" "))}</td><td>${spark(devSeries(x.device_id, "reads_failed"), 120, 22)}</td></tr>`).join("") + "</table>" : `<p class="muted">${tr("none")}</p>`) + "</section>" +
        `<section><h2>${tr("open_alerts")}</h2>${alertsTable(d.alerts.filter((a) => a.state === "open"), canActOnAlerts)}</section>` +
        `<section><h2>${tr("events")}</h2>` + (d.events.length ? `<table>${d.events.map((e) => `<tr><td>${time(e.received_at)}</td><td>${esc(e.device_id || "")}</td><td class="sev-${esc(e.severity)}">${esc(e.name)}</td><td class="muted">${esc(JSON.stringify(e.data))}</td></tr>`).join("")}</table>` : `<p class="muted">${tr("none")}</p>`) + "</section>" +
        pbk.outletSection(d.playbook_runs) + cfg.outletSection(d.config);
    },

    evaluations(d) {
      return figuresSection(d) + (!d.available || !d.rows.length
        ? `<section><h2>${tr("nav_evaluations")}</h2><p id="no-data">${tr("no_data")}</p></section>`
        : `<section><h2>${tr("nav_evaluations")} <span class="muted">${tr("window_days")}: ${d.days}</span></h2><table id="evaluation-rows"><tr><th>${tr("outlet")}</th><th>${tr("evaluations")}</th><th data-col="default_evaluations">${tr("default_evaluations")}</th><th>${tr("active_rate")}</th><th>${tr("satisfaction")}</th><th>${tr("bad_reviews")}</th><th>${tr("overdue_rect")}</th></tr>` +
          d.rows.map((r) => `<tr data-outlet="${esc(r.outlet_id || "")}"><td>${r.outlet_id ? esc(r.outlet_id) : "<b>" + tr("all_outlets") + "</b>"}</td><td>${r.evaluations}</td><td data-col="default_evaluations">${r.default_evaluations}</td><td>${pct(r.active_evaluation_rate)} <span class="muted">/ ${pct(r.active_rate_target)}</span></td><td>${pct(r.satisfaction_rate)}</td><td>${r.bad_reviews}</td><td>${r.overdue_rectifications}</td></tr>`).join("") + "</table></section>");
    },
  };

  const source = {
    overview: () => "/api/v1/fleet/overview",
    map: () => "/ui/data/map",
    outlet: () => "/api/v1/outlets/" + encodeURIComponent(data.outlet_id) + "/health",
    evaluations: () => "/ui/data/evaluations?days=" + (data.days || 30) + "&by=" + (data.by || "kind"),
    config: () => "/ui/data/config",
  };
  let mounted = false;

  function draw() {
    if (own) {
      if (!mounted) { own.mount(boot.data); mounted = true; }
      return;
    }
    if (isCampaigns) {  // campaigns.js reads the campaign API itself
      if (!mounted) { camp.mount(boot.data); mounted = true; }
      return;
    }
    if (isPlaybooks) {  // so does playbooks.js the runs API
      if (!mounted) { pbk.mount(boot.data); mounted = true; }
      return;
    }
    if (isOps) {
      if (!mounted) { ops.mount(boot.page, boot.data); mounted = true; }
      return;
    }
    if (boot.page === "config") {
      // The editor holds the operator's unsaved text: only the lists are redrawn.
      if (mounted) cfg.update(data);
      else { main.innerHTML = cfg.skeleton(boot.data); cfg.mount(boot.data); mounted = true; }
    } else {
      main.innerHTML = render[boot.page](data);
    }
    main.dataset.version = String((Number(main.dataset.version) || 0) + 1);
    if (boot.page === "map") bindMap();
  }

  function bindMap() {
    const svg = document.getElementById("map");
    if (!svg) return;
    // One listener for every point; the clicked outlet's card is fetched then (the points
    // carry no profile), and only the newest click's answer is shown.
    let clicked = null;
    svg.addEventListener("click", async (ev) => {
      const c = ev.target.closest("circle[data-outlet]");
      if (!c) return;
      clicked = c.dataset.outlet;
      const r = await fetch("/api/v1/outlets/" + encodeURIComponent(clicked) + "/health", { cache: "no-store" });
      if (!r.ok) return;
      const o = await r.json();
      const detail = document.getElementById("detail");
      if (!detail || o.outlet_id !== clicked) return;
      detail.innerHTML = `<h2><a href="/ui/outlets/${encodeURIComponent(o.outlet_id)}">${esc(o.name)}</a></h2><p>${st(o.state)} ${kind(o.kind)}</p>` +
        `<p><b>${tr("opening_hours")}</b>: ${esc(o.opening_hours_text)}</p><p><b>${tr("address")}</b>: ${esc(o.address || "-")}</p><p><b>${tr("phone")}</b>: ${esc(o.phone || "-")}</p>` +
        `<p><b>${tr("service_items")}</b>: ${esc((o.service_items || []).join("、") || "-")}</p><p><b>${tr("open_alerts")}</b>: ${o.open_alerts}</p>`;
    });
  }

  // A refused action says why: the API's own message, next to the buttons.
  main.addEventListener("click", async (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (!b) return;
    const r = await fetch(`/api/v1/alerts/${b.dataset.id}/${b.dataset.act}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    if (r.ok) return;
    let why = `HTTP ${r.status}`;
    try { const body = await r.json(); if (typeof body.detail === "string") why = body.detail; } catch (_) { /* not JSON */ }
    if (r.status === 503) why = tr("db_down_title");  // the database, in the page's language
    let note = document.getElementById("action-error");
    if (!note) { note = document.createElement("p"); note.id = "action-error"; note.className = "error"; main.prepend(note); }
    note.textContent = `${tr("action_refused")}: ${why}`;
  });

  async function refresh() {
    if (own) { await own.refresh(); return; }
    if (isCampaigns) { await camp.refresh(); return; }
    if (isPlaybooks) { await pbk.refresh(); return; }
    if (isOps) { await ops.refresh(); return; }
    // The map's points come from the light API, asked at once with the page's own data
    // (one after the other cost the second request's whole wait on every load).
    const points = boot.page === "map" ? fetch("/api/v1/fleet/map-points", { cache: "no-store" }).catch(() => null) : null;
    const r = await fetch(source[boot.page](), { cache: "no-store" });
    if (!r.ok) return;
    const fresh = await r.json();
    if (boot.page === "outlet") {  // the config section comes from the config API
      const c = await fetch("/api/v1/outlets/" + encodeURIComponent(data.outlet_id) + "/config", { cache: "no-store" });
      fresh.config = c.ok ? await c.json() : null;
      // and its playbook runs from the runs API (the health view has neither)
      const p = await fetch("/api/v1/outlets/" + encodeURIComponent(data.outlet_id) + "/playbook-runs?limit=10", { cache: "no-store" });
      fresh.playbook_runs = p.ok ? await p.json() : data.playbook_runs;
    }
    if (points) {
      const p = await points;
      fresh.points = p && p.ok ? await p.json() : data.points;
    }
    data = fresh;
    draw();
  }

  // The config page's drift list merges every outlet's scopes: presence changes all
  // over the fleet refetch it at most every 10 s (a save refetches at once).
  let pending = null, lastConfigRefresh = 0;
  function changed() {
    if (boot.page !== "config") { refreshOnce(); return; }
    if (pending) return;
    pending = setTimeout(() => { pending = null; lastConfigRefresh = Date.now(); refreshOnce(); },
      Math.max(0, lastConfigRefresh + 10000 - Date.now()));
  }

  // One refresh at a time: a change while one runs asks for exactly one more after it
  // (which then reads everything up to that change). The stream's first event comes
  // while the map's first load is still running: two loads side by side made both
  // slower, each 570 KiB at 10,000 outlets (docs/performance.md, "web_draw").
  let running = null, again = false;
  function refreshOnce() {
    if (running) { again = true; return; }
    running = refresh().finally(() => {
      running = null;
      if (again) { again = false; refreshOnce(); }
    });
  }

  function connect() {
    const live = document.getElementById("live");
    const es = new EventSource("/api/v1/stream");
    es.addEventListener("open", () => { live.className = "live"; live.textContent = tr("live"); });
    // The page was read at boot.live_version: the stream's first event repeats that
    // number unless something changed since, and then there is nothing to refetch.
    // (hub: the server process; behind a proxy a reconnect may reach another one.)
    let known = boot.live_version ? `${boot.live_version.hub}:${boot.live_version.version}` : null;
    es.addEventListener("change", (ev) => {
      let now = null;
      try { const d = JSON.parse(ev.data); now = `${d.hub}:${d.version}`; } catch (_) { /* refetch */ }
      if (now !== null && now === known) return;
      known = now;
      changed();
    });
    es.addEventListener("error", () => { live.className = "live off"; live.textContent = tr("disconnected"); });
  }

  draw();
  if (boot.page === "map") refreshOnce();  // the page carries no points: fetch them now
  connect();
})();
