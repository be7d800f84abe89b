// govedge operator UI: the outlets list with the registry's import and export, and the
// admins' pages (audit log, users and roles, enrollment tokens and certificates).
// Each page reads its API a page at a time; actions the role may not take are not drawn,
// and a refused one shows the API's reason. app.js hands in its helpers.
"use strict";
window.govedgeRegistry = function (h) {
  const { esc, tr, time, st } = h;
  const $ = (id) => document.getElementById(id);
  const main = () => document.getElementById("main");
  const fmt = (key, values) => tr(key).replace(/\{(\w+)\}/g, (_, k) => String(values[k] ?? ""));
  const PAGE = 50;
  // Typing, paging and live changes all reload a list, and answers can arrive in either
  // order: only a page's latest request may draw.
  let drawn = 0;
  const latest = () => { const mine = ++drawn; return () => mine === drawn; };

  async function call(method, url, body, contentType) {
    const init = { method, cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["content-type"] = contentType || "application/json";
      init.body = contentType ? body : JSON.stringify(body);
    }
    const r = await fetch(url, init);
    let json = null;
    try { json = await r.json(); } catch (e) { json = null; }
    return { status: r.status, ok: r.ok, json };
  }

  function why(res) {
    const d = res.json && res.json.detail;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
    return `HTTP ${res.status}`;
  }

  const refused = (res, id) => `<p class="error" id="${id}">${esc(tr("action_refused"))} (${res.status}): ${esc(why(res))}</p>`;
  const once = (label, value, id) => `<p class="ok">${esc(label)}: <code id="${id}">${esc(value)}</code> <span class="muted">(${esc(tr("us_once"))})</span></p>`;

  // ---- outlets: search, sort, pages; registry import/export ----
  function outletsPage() {
    const view = { q: "", state: "", sort: "id", order: "asc", offset: 0, total: 0, canImport: false };

    function skeleton(d) {
      const states = ["online", "offline", "stale", "unknown"];
      const sortHead = (key, label) => `<th><a href="#" data-sort="${key}">${esc(label)}</a><span data-arrow="${key}"></span></th>`;
      const importer = d.can_import
        ? `<p><input type="file" id="rg-file" accept=".csv,.json,text/csv,application/json"> <button type="button" id="rg-import">${esc(tr("rg_import"))}</button> <span class="muted">${esc(tr("rg_import_hint"))}</span></p>`
        : `<p class="muted" id="rg-read-only">${esc(tr("rg_export_only"))}</p>`;
      return `<section><h2>${esc(tr("nav_outlets"))}${d.scope && d.scope.length ? ` <span class="muted" id="rg-scope">${esc(tr("rg_scope"))}: ${esc(d.scope.join(" "))}</span>` : ""}</h2>` +
        `<p><input id="rg-q" type="search" size="30" maxlength="64" placeholder="${esc(tr("rg_search"))}"> <select id="rg-state"><option value="">${esc(tr("rg_all_states"))}</option>` +
        states.map((s) => `<option value="${s}">${esc(tr(s))}</option>`).join("") + `</select></p>` +
        `<table id="outlet-list"><thead><tr>${sortHead("id", tr("rg_id"))}${sortHead("name", tr("rg_name"))}${sortHead("state", tr("state"))}${sortHead("last_seen", tr("last_seen"))}<th>${esc(tr("agent_version"))}</th></tr></thead><tbody id="rg-rows"></tbody></table>` +
        `<p class="pager"><button type="button" id="rg-prev">${esc(tr("rg_prev"))}</button> <span id="rg-shown"></span> <button type="button" id="rg-next">${esc(tr("rg_next"))}</button></p></section>` +
        `<section id="registry"><h2>${esc(tr("rg_registry"))}</h2><p>${esc(tr("rg_export"))}: <a id="rg-export-csv" href="/api/v1/outlets/export?format=csv" download="outlets.csv">CSV</a> · <a id="rg-export-json" href="/api/v1/outlets/export?format=json" download="outlets.json">JSON</a></p>${importer}<div id="rg-result"></div></section>`;
    }

    function rowsHtml(items) {
      if (!items.length) return `<tr><td colspan="5" class="muted">${esc(tr("none"))}</td></tr>`;
      return items.map((o) => `<tr data-outlet="${esc(o.outlet_id)}"><td><a href="/ui/outlets/${encodeURIComponent(o.outlet_id)}">${esc(o.outlet_id)}</a></td>` +
        `<td>${esc(o.display_name || "")}</td><td>${st(o.state)}</td><td>${time(o.last_seen)}</td><td>${esc(o.agent_version || "-")}</td></tr>`).join("");
    }

    // given: the first page the server put in the page (by id, ascending, offset 0).
    async function load(given) {
      const params = new URLSearchParams({ sort: view.sort, order: view.order, limit: String(PAGE), offset: String(view.offset) });
      if (view.q) params.set("q", view.q);
      if (view.state) params.set("state", view.state);
      const current = latest();
      const res = given ? { ok: true, json: given } : await call("GET", "/api/v1/outlets?" + params.toString());
      if (!current()) return;
      if (!res.ok) { $("rg-rows").innerHTML = `<tr><td colspan="5">${refused(res, "rg-list-error")}</td></tr>`; return; }
      const page = res.json;
      view.total = page.total;
      $("rg-rows").innerHTML = rowsHtml(page.items);
      const from = page.total ? view.offset + 1 : 0;
      $("rg-shown").textContent = fmt("rg_shown", { from, to: view.offset + page.items.length, total: page.total });
      $("rg-prev").disabled = view.offset === 0;
      $("rg-next").disabled = view.offset + PAGE >= page.total;
      document.querySelectorAll("[data-arrow]").forEach((el) => { el.textContent = el.dataset.arrow === view.sort ? (view.order === "asc" ? " ▲" : " ▼") : ""; });
      main().dataset.total = String(page.total);
    }

    function errorsTable(errors) {
      return `<table id="rg-errors"><tr><th>${esc(tr("rg_row"))}</th><th>${esc(tr("rg_field"))}</th><th>${esc(tr("rg_message"))}</th></tr>` +
        errors.map((e) => `<tr data-row="${esc(e.row)}" data-field="${esc(e.field)}"><td>${esc(e.row)}</td><td>${esc(e.field)}</td><td>${esc(e.message)}</td></tr>`).join("") + "</table>";
    }

    async function importFile() {
      const file = $("rg-file").files[0];
      const out = $("rg-result");
      if (!file) { out.innerHTML = `<p class="error" id="rg-no-file">${esc(tr("rg_no_file"))}</p>`; return; }
      const json = /\.json$/i.test(file.name) || file.type === "application/json";
      $("rg-import").disabled = true;
      const res = await call("POST", `/api/v1/outlets/import?format=${json ? "json" : "csv"}`, await file.arrayBuffer(), json ? "application/json" : "text/csv");
      $("rg-import").disabled = false;
      if (res.ok) {
        out.innerHTML = `<p class="ok" id="rg-imported">${esc(fmt("rg_imported", res.json))}</p>`;
        await load();
        return;
      }
      const errors = (res.json && res.json.errors) || [];
      out.innerHTML = `<p class="error" id="rg-refused">${esc(tr("rg_nothing_imported"))} (${res.status}): ${esc(why(res))}</p>` + (errors.length ? errorsTable(errors) : "");
    }

    let typing = null;
    function mount(d) {
      view.canImport = !!d.can_import;
      main().innerHTML = skeleton(d);
      $("rg-q").addEventListener("input", () => {
        clearTimeout(typing);
        typing = setTimeout(() => { view.q = $("rg-q").value.trim(); view.offset = 0; load(); }, 250);
      });
      $("rg-state").addEventListener("change", () => { view.state = $("rg-state").value; view.offset = 0; load(); });
      $("rg-prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); load(); });
      $("rg-next").addEventListener("click", () => { view.offset += PAGE; load(); });
      document.querySelectorAll("[data-sort]").forEach((a) => a.addEventListener("click", (ev) => {
        ev.preventDefault();
        const key = a.dataset.sort;
        view.order = view.sort === key && view.order === "asc" ? "desc" : "asc";
        view.sort = key;
        view.offset = 0;
        load();
      }));
      if (view.canImport) $("rg-import").addEventListener("click", importFile);
      load(d.first_page && d.first_page.limit === PAGE ? d.first_page : undefined);
    }

    return { mount, refresh: () => load() };
  }

  // ---- audit log ----
  function auditPage() {
    const view = { filters: {}, pages: [] };  // pages: the before_id of each page shown

    function skeleton() {
      const input = (id, label, hint, type) => `<label>${esc(label)} <input id="${id}" type="${type || "text"}" size="16"${hint ? ` placeholder="${esc(hint)}"` : ""}></label> `;
      return `<section><h2>${esc(tr("nav_audit"))}</h2><form id="au-form">` +
        input("au-actor", tr("au_actor")) + input("au-action", tr("au_action"), tr("au_action_hint")) + input("au-target", tr("au_target")) +
        input("au-since", tr("since"), "", "date") + `<button type="submit">${esc(tr("au_filter"))}</button></form>` +
        `<div id="au-rows"></div><p class="pager"><button type="button" id="au-newest">${esc(tr("au_newest"))}</button> <button type="button" id="au-older">${esc(tr("au_older"))}</button></p></section>`;
    }

    const compact = (v) => (v ? JSON.stringify(v) : "");

    async function load() {
      const params = new URLSearchParams({ limit: String(PAGE) });
      Object.entries(view.filters).forEach(([k, v]) => { if (v) params.set(k, v); });
      const before = view.pages[view.pages.length - 1];
      if (before) params.set("before_id", String(before));
      const current = latest();
      const res = await call("GET", "/api/v1/audit?" + params.toString());
      if (!current()) return;
      if (!res.ok) { $("au-rows").innerHTML = refused(res, "au-error"); return; }
      const rows = res.json;
      $("au-rows").innerHTML = rows.length ? `<table id="audit-list"><tr><th>${esc(tr("time"))}</th><th>${esc(tr("au_actor"))}</th><th>${esc(tr("au_action"))}</th><th>${esc(tr("au_target"))}</th><th>${esc(tr("au_before"))}</th><th>${esc(tr("au_after"))}</th></tr>` +
        rows.map((r) => `<tr data-audit="${esc(r.id)}" data-action="${esc(r.action)}"><td>${time(r.at)}</td><td>${esc(r.actor)}</td><td>${esc(r.action)}</td><td>${esc(r.target)}</td><td class="muted">${esc(compact(r.before))}</td><td class="muted">${esc(compact(r.after))}</td></tr>`).join("") + "</table>"
        : `<p class="muted" id="au-none">${esc(tr("none"))}</p>`;
      view.last = rows.length ? rows[rows.length - 1].id : null;
      $("au-older").disabled = rows.length < PAGE;
      $("au-newest").disabled = view.pages.length === 0;
    }

    function mount() {
      main().innerHTML = skeleton();
      $("au-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        const since = $("au-since").value;
        view.filters = { actor: $("au-actor").value.trim(), action: $("au-action").value.trim(), target: $("au-target").value.trim(), since: since ? new Date(since).toISOString() : "" };
        view.pages = [];
        load();
      });
      $("au-older").addEventListener("click", () => { if (view.last) { view.pages.push(view.last); load(); } });
      $("au-newest").addEventListener("click", () => { view.pages = []; load(); });
      load();
    }

    // Live: new entries appear only on the newest page (an older page stays put).
    return { mount, refresh: () => (view.pages.length ? Promise.resolve() : load()) };
  }

  // ---- users and roles ----
  function usersPage() {
    const ACTIONS = [["reset", "us_reset"], ["unlock", "us_unlock"], ["disable", "us_disable"], ["revoke", "us_revoke"], ["scope", "us_set_scope"]];

    function skeleton(d) {
      return `<section><h2>${esc(tr("us_add"))}</h2><form id="us-form">` +
        `<label>${esc(tr("us_name"))} <input id="us-name" required maxlength="64"></label> ` +
        `<label>${esc(tr("us_role"))} <select id="us-role">${(d.roles || []).map((r) => `<option value="${esc(r)}">${esc(r)}</option>`).join("")}</select></label> ` +
        `<label>${esc(tr("us_regions"))} <input id="us-regions" size="20"></label> ` +
        `<label>${esc(tr("us_password"))} <input id="us-password" type="password" autocomplete="new-password"></label> ` +
        `<label><input type="checkbox" id="us-generate"> ${esc(tr("us_generate"))}</label> ` +
        `<button type="submit" id="us-create">${esc(tr("us_create"))}</button></form><div id="us-message"></div></section>` +
        `<section><h2>${esc(tr("nav_users"))}</h2><div id="us-rows"></div></section>`;
    }

    function rowsHtml(users) {
      return `<table id="user-list"><tr><th>${esc(tr("us_name"))}</th><th>${esc(tr("us_role"))}</th><th>${esc(tr("us_scope"))}</th><th>${esc(tr("us_state"))}</th><th></th></tr>` +
        users.map((u) => `<tr data-user="${esc(u.name)}"><td>${esc(u.name)}</td><td data-role="${esc(u.role)}">${esc(u.role)}</td>` +
          `<td class="us-scope">${esc(u.regions.length ? u.regions.join(" ") : tr("us_whole"))}</td><td data-disabled="${u.disabled}">${esc(tr(u.disabled ? "us_disabled" : "us_active"))}</td>` +
          `<td>${ACTIONS.map(([act, key]) => `<button type="button" data-us="${act}" data-name="${esc(u.name)}">${esc(tr(key))}</button>`).join(" ")}</td></tr>`).join("") + "</table>";
    }

    async function load() {
      const res = await call("GET", "/api/v1/users");
      $("us-rows").innerHTML = res.ok ? rowsHtml(res.json) : refused(res, "us-error");
    }

    const split = (text) => text.split(/[\s,，、;；]+/).filter(Boolean);

    async function create() {
      const body = { name: $("us-name").value.trim(), role: $("us-role").value, regions: split($("us-regions").value) };
      if ($("us-generate").checked) body.generate_password = true;
      else if ($("us-password").value) body.password = $("us-password").value;
      const res = await call("POST", "/api/v1/users", body);
      const out = $("us-message");
      if (!res.ok) { out.innerHTML = refused(res, "us-refused"); return; }
      out.innerHTML = `<p class="ok" id="us-created">${esc(fmt("us_created", { name: res.json.user }))}</p>` + once(tr("us_token"), res.json.token, "us-token") +
        (res.json.password ? once(tr("us_new_password"), res.json.password, "us-generated") : "");
      $("us-form").reset();
      await load();
    }

    async function act(action, name) {
      const base = `/api/v1/users/${encodeURIComponent(name)}`;
      let res;
      if (action === "reset") res = await call("POST", `${base}/password`, { generate: true });
      else if (action === "unlock") res = await call("POST", `${base}/unlock`);
      else if (action === "disable") res = await call("POST", `${base}/disable`);
      else if (action === "revoke") res = await call("POST", `${base}/sessions/revoke`);
      else {
        const text = window.prompt(tr("us_scope_prompt"), "");
        if (text === null) return;
        res = await call("PUT", `${base}/scope`, { regions: split(text) });
      }
      const out = $("us-message");
      if (!res.ok) { out.innerHTML = refused(res, "us-refused"); return; }
      if (action === "reset") out.innerHTML = once(`${name} · ${tr("us_new_password")}`, res.json.password, "us-generated");
      else if (action === "revoke") out.innerHTML = `<p class="ok" id="us-done">${esc(fmt("us_sessions_ended", { n: res.json.sessions_ended }))}</p>`;
      else out.innerHTML = `<p class="ok" id="us-done">${esc(tr("us_done"))}: ${esc(name)}</p>`;
      await load();
    }

    function mount(d) {
      main().innerHTML = skeleton(d);
      $("us-form").addEventListener("submit", (ev) => { ev.preventDefault(); create(); });
      $("us-rows").addEventListener("click", (ev) => {
        const b = ev.target.closest("button[data-us]");
        if (b) act(b.dataset.us, b.dataset.name);
      });
      load();
    }

    return { mount, refresh: load };
  }

  // ---- enrollment tokens and certificates ----
  function enrollmentPage() {
    const view = { offset: 0 };
    const estate = (s) => `<span class="st es-${esc(s)}" data-state="${esc(s)}">${esc(tr("es_" + s, s))}</span>`;

    function skeleton() {
      return `<section><h2>${esc(tr("en_mint"))}</h2><form id="en-form"><label>${esc(tr("en_outlet"))} <input id="en-outlet" required maxlength="64"></label> ` +
        `<label>${esc(tr("en_ttl"))} <input id="en-ttl" type="number" min="1" max="720" value="24"></label> <button type="submit" id="en-mint">${esc(tr("en_mint_button"))}</button></form><div id="en-message"></div></section>` +
        `<section><h2>${esc(tr("en_tokens"))}</h2><div id="en-tokens"></div></section>` +
        `<section><h2>${esc(tr("en_certs"))}</h2><div id="en-certs"></div><p class="pager"><button type="button" id="en-prev">${esc(tr("rg_prev"))}</button> <span id="en-shown"></span> <button type="button" id="en-next">${esc(tr("rg_next"))}</button></p></section>`;
    }

    async function load() {
      const current = latest();
      const tokens = await call("GET", "/api/v1/enrollments");
      if (!current()) return;
      $("en-tokens").innerHTML = !tokens.ok ? refused(tokens, "en-error") : !tokens.json.length ? `<p class="muted">${esc(tr("none"))}</p>` :
        `<table id="token-list"><tr><th>${esc(tr("en_outlet"))}</th><th>${esc(tr("state"))}</th><th>${esc(tr("en_by"))}</th><th>${esc(tr("en_created"))}</th><th>${esc(tr("en_expires"))}</th><th>${esc(tr("en_used"))}</th></tr>` +
        tokens.json.map((r) => `<tr data-token-outlet="${esc(r.outlet_id)}"><td>${esc(r.outlet_id)}</td><td>${estate(r.state)}</td><td>${esc(r.created_by)}</td><td>${time(r.created_at)}</td><td>${time(r.expires_at)}</td><td>${time(r.used_at)}</td></tr>`).join("") + "</table>";
      const certs = await call("GET", `/api/v1/certificates?limit=${PAGE}&offset=${view.offset}`);
      if (!current()) return;
      if (!certs.ok) { $("en-certs").innerHTML = refused(certs, "en-error"); return; }
      const page = certs.json;
      $("en-certs").innerHTML = !page.items.length ? `<p class="muted">${esc(tr("none"))}</p>` :
        `<table id="cert-list"><tr><th>${esc(tr("outlet"))}</th><th>${esc(tr("en_serial"))}</th><th>${esc(tr("state"))}</th><th>${esc(tr("en_not_after"))}</th><th></th></tr>` +
        page.items.map((c) => `<tr data-cert="${esc(c.serial)}"><td><a href="/ui/outlets/${encodeURIComponent(c.outlet_id)}">${esc(c.outlet_id)}</a></td><td><code>${esc(c.serial)}</code></td><td>${estate(c.state)}</td><td>${time(c.not_after)}</td>` +
          `<td><button type="button" data-revoke="${esc(c.outlet_id)}">${esc(tr("en_revoke"))}</button></td></tr>`).join("") + "</table>";
      $("en-shown").textContent = fmt("rg_shown", { from: page.total ? view.offset + 1 : 0, to: view.offset + page.items.length, total: page.total });
      $("en-prev").disabled = view.offset === 0;
      $("en-next").disabled = view.offset + PAGE >= page.total;
    }

    async function mint() {
      const body = { outlet_id: $("en-outlet").value.trim(), ttl_s: Math.round(Number($("en-ttl").value || 24) * 3600) };
      const res = await call("POST", "/api/v1/enrollments", body);
      const out = $("en-message");
      if (!res.ok) { out.innerHTML = refused(res, "en-refused"); return; }
      out.innerHTML = once(fmt("en_token_for", { outlet: res.json.outlet_id }), res.json.token, "en-token");
      await load();
    }

    async function revoke(outlet) {
      if (!window.confirm(fmt("en_confirm", { outlet }))) return;
      const res = await call("POST", `/api/v1/outlets/${encodeURIComponent(outlet)}/revoke`);
      $("en-message").innerHTML = res.ok ? `<p class="ok" id="en-revoked">${esc(fmt("en_revoked", { n: res.json.revoked.length }))}</p>` : refused(res, "en-refused");
      await load();
    }

    function mount() {
      main().innerHTML = skeleton();
      $("en-form").addEventListener("submit", (ev) => { ev.preventDefault(); mint(); });
      $("en-certs").addEventListener("click", (ev) => { const b = ev.target.closest("button[data-revoke]"); if (b) revoke(b.dataset.revoke); });
      $("en-prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE); load(); });
      $("en-next").addEventListener("click", () => { view.offset += PAGE; load(); });
      load();
    }

    return { mount, refresh: load };
  }

  const pages = {};
  const makers = { outlets: outletsPage, audit: auditPage, users: usersPage, enrollment: enrollmentPage };
  if (makers[h.boot.page]) pages[h.boot.page] = makers[h.boot.page]();
  return { pages };
};
