// The mesh dashboard's only script. Pages are complete without it; it
// - refreshes every element with `data-live="URL"` by fetching that URL (the same section,
//   rendered by the server) every couple of seconds, while the page is visible;
// - sorts tables whose header links carry `data-sort`, by asking the server for the section
//   sorted (so the order survives refreshes);
// - reads the live `top` (`data-top`) and tap (`#tap-form`) streams: newline-delimited JSON
//   over fetch and a ReadableStream.
// Data from the streams is put in the page with textContent only, never as markup.
"use strict";

(() => {
  const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
  const MAX_TAP_ROWS = 200;
  const status = document.getElementById("live-status");

  function setStatus(text, bad) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("bad", !!bad);
  }

  // === Live sections ===

  const live = Array.from(document.querySelectorAll("[data-live]"));

  async function refresh(el) {
    const rsp = await fetch(el.dataset.live, { headers: { accept: "text/html" } });
    if (!rsp.ok) throw new Error(`${rsp.status} ${rsp.statusText}`);
    const html = await rsp.text();
    if (html !== el.dataset.last) {
      el.innerHTML = html;
      el.dataset.last = html;
    }
  }

  async function refreshAll() {
    if (document.hidden || live.length === 0) return;
    try {
      await Promise.all(live.map(refresh));
      setStatus(`live · updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      setStatus(`not updating: ${e.message}`, true);
    }
  }

  if (live.length > 0) {
    setStatus("live");
    setInterval(refreshAll, REFRESH_MS);
    document.addEventListener("visibilitychange", refreshAll);
  } else {
    setStatus("");
  }

  // Sorting: ask for the section sorted, remember the order in the address bar.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("th a[data-sort]");
    if (!a) return;
    const section = a.closest("[data-live]");
    if (!section) return;
    ev.preventDefault();
    const url = new URL(section.dataset.live, location.href);
    url.searchParams.set("sort", a.dataset.sort);
    url.searchParams.set("dir", a.dataset.dir);
    section.dataset.live = url.pathname + url.search;
    const page = new URL(location.href);
    page.searchParams.set("sort", a.dataset.sort);
    page.searchParams.set("dir", a.dataset.dir);
    history.replaceState(null, "", page.pathname + page.search);
    refresh(section).catch((e) => setStatus(`not updating: ${e.message}`, true));
  });

  // === Streams ===

  // Calls onLine with each JSON line of the answer to `url`, until it ends or `signal` aborts.
  async function streamLines(url, signal, onLine) {
    const rsp = await fetch(url, { signal, headers: { accept: "application/x-ndjson" } });
    if (!rsp.ok) {
      let msg = `${rsp.status} ${rsp.statusText}`;
      try {
        msg = (await rsp.json()).error || msg;
      } catch (_) {
        // not JSON: keep the status line
      }
      throw new Error(msg);
    }
    const reader = rsp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  // === Top ===

  const TOP_HEADERS = ["Source", "Destination", "Method", "Path", "Count", "Best", "Worst", "Last", "Success Rate"];
  const topEl = document.querySelector("[data-top]");

  function renderTop(snap) {
    const table = el("table", null, "metrics top");
    const head = table.createTHead().insertRow();
    for (const h of TOP_HEADERS) head.appendChild(el("th", h));
    const body = table.createTBody();
    for (const r of snap.rows) {
      const tr = body.insertRow();
      tr.dataset.path = r.path;
      r.cells.forEach((c, i) => {
        const td = el("td", c, i >= 4 ? "num" : "");
        if (i === 8) td.classList.add(r.success_rate >= 99 ? "good" : r.success_rate >= 90 ? "warn" : "bad");
        tr.appendChild(td);
      });
    }
    const parts = [table];
    if (snap.rows.length === 0) parts.unshift(el("p", "Waiting for requests…", "empty"));
    for (const e of snap.errors) parts.push(el("p", e, "error"));
    topEl.replaceChildren(...parts);
  }

  async function runTop() {
    for (;;) {
      try {
        await streamLines(topEl.dataset.top, undefined, (snap) => {
          if (snap.error) throw new Error(snap.error);
          renderTop(snap);
        });
      } catch (e) {
        topEl.replaceChildren(el("p", `top stopped: ${e.message}; retrying`, "error"));
      }
      await new Promise((r) => setTimeout(r, 3000));
    }
  }

  if (topEl) runTop();

  // === Tap ===

  const form = document.getElementById("tap-form");
  if (form) {
    const tbody = document.querySelector("#tap-table tbody");
    const tapStatus = document.getElementById("tap-status");
    const stopButton = document.getElementById("tap-stop");
    const cli = document.getElementById("tap-cli");
    const rows = new Map();
    let controller = null;
    tapStatus.textContent = "Press Start to watch requests.";

    const FAILING_GRPC = new Set([2, 4, 13, 14, 15]);
    const GRPC_NAMES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
      "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
      "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"];

    const ms = (ns) => `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 0)}ms`;

    function shellQuote(s) {
      return /^[A-Za-z0-9/_.:-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`;
    }

    function filters() {
      const f = {};
      for (const k of ["path", "method", "authority"]) {
        const v = form.elements[k].value.trim();
        if (v) f[k] = v;
      }
      return f;
    }

    function details(ev, row) {
      const dl = el("dl", null, "details");
      const add = (k, v) => {
        if (v === undefined || v === null || v === "") return;
        dl.appendChild(el("dt", k));
        dl.appendChild(el("dd", v));
      };
      add("workload", `${ev.namespace}/${ev.workload}`);
      add("direction", ev.direction);
      add("source", ev.source);
      add("destination", ev.destination);
      add("tls", row.tls);
      for (const [k, v] of Object.entries(ev.source_meta || {})) add(`source ${k}`, v);
      for (const [k, v] of Object.entries(ev.destination_meta || {})) add(`destination ${k}`, v);
      for (const [k, v] of Object.entries(ev.route_meta || {})) add(`route ${k}`, v);
      return dl;
    }

    function onEvent(ev) {
      const http = ev.http;
      const kind = Object.keys(http)[0];
      const body = http[kind];
      const key = `${ev.namespace}/${ev.workload}/${ev.direction}/${body.id.base}:${body.id.stream}`;
      if (kind === "request_init") {
        const tr = el("tr", null, "tap-row");
        tr.tabIndex = 0;
        tr.dataset.id = `${body.id.base}:${body.id.stream}`;
        tr.dataset.path = body.path;
        tr.dataset.method = body.method;
        tr.dataset.authority = body.authority;
        tr.dataset.direction = ev.direction;
        const peer = ev.direction === "inbound"
          ? (ev.source_meta && ev.source_meta.client_id) || ev.source || "-"
          : (ev.destination_meta && ev.destination_meta.server_id) || ev.destination || "-";
        const cells = {
          time: el("td", new Date().toLocaleTimeString()),
          dir: el("td", ev.direction === "inbound" ? "in" : ev.direction === "outbound" ? "out" : "?"),
          peer: el("td", String(peer).split(".serviceaccount.")[0]),
          method: el("td", body.method),
          authority: el("td", body.authority),
          path: el("td", body.path, "path"),
          status: el("td", "…", "num"),
          latency: el("td", "", "num"),
          grpc: el("td", ""),
        };
        Object.values(cells).forEach((c) => tr.appendChild(c));
        const detail = el("tr", null, "tap-detail");
        detail.hidden = true;
        const td = el("td");
        td.colSpan = 9;
        detail.appendChild(td);
        const row = { tr, detail, cells, ev, tls: ((ev.direction === "inbound" ? ev.source_meta : ev.destination_meta) || {}).tls };
        td.appendChild(details(ev, row));
        rows.set(key, row);
        tbody.prepend(tr, detail);
        while (tbody.rows.length > MAX_TAP_ROWS * 2) {
          const last = tbody.rows[tbody.rows.length - 2];
          for (const [k, r] of rows) if (r.tr === last) rows.delete(k);
          tbody.deleteRow(-1);
          tbody.deleteRow(-1);
        }
        return;
      }
      const row = rows.get(key);
      if (!row) return;
      if (kind === "response_init") {
        row.tr.dataset.status = body.status;
        row.cells.status.textContent = body.status;
        row.cells.latency.textContent = ms(body.since_request_init_ns);
        if (body.status >= 500) row.tr.classList.add("failed");
      } else if (kind === "response_end") {
        const eos = body.eos || {};
        if (eos.grpc_status !== undefined) {
          row.tr.dataset.grpcStatus = eos.grpc_status;
          row.cells.grpc.textContent = GRPC_NAMES[eos.grpc_status] || String(eos.grpc_status);
          if (FAILING_GRPC.has(eos.grpc_status)) row.tr.classList.add("failed");
        } else if (eos.reset_error !== undefined) {
          row.cells.grpc.textContent = `reset ${eos.reset_error}`;
          row.tr.classList.add("failed");
        }
        row.tr.dataset.ended = "true";
        const dl = row.detail.querySelector("dl");
        dl.appendChild(el("dt", "duration"));
        dl.appendChild(el("dd", ms(body.since_response_init_ns)));
        dl.appendChild(el("dt", "response bytes"));
        dl.appendChild(el("dd", body.response_bytes));
      }
    }

    tbody.addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr.tap-row");
      if (!tr) return;
      const detail = tr.nextElementSibling;
      detail.hidden = !detail.hidden;
      tr.classList.toggle("open", !detail.hidden);
    });
    tbody.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.target.matches("tr.tap-row")) ev.target.click();
    });

    function stop(message) {
      if (controller) controller.abort();
      controller = null;
      stopButton.disabled = true;
      if (message) tapStatus.textContent = message;
    }

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      stop();
      rows.clear();
      tbody.replaceChildren();
      const f = filters();
      const params = new URLSearchParams({ namespace: form.dataset.namespace, resource: form.dataset.resource, ...f });
      let cmd = `mesh tap ${form.dataset.resource} -n ${shellQuote(form.dataset.namespace)}`;
      for (const [k, v] of Object.entries(f)) cmd += ` --${k} ${shellQuote(v)}`;
      cli.textContent = cmd;
      const page = new URL(location.href);
      for (const k of ["path", "method", "authority"]) {
        if (f[k]) page.searchParams.set(k, f[k]);
        else page.searchParams.delete(k);
      }
      history.replaceState(null, "", page.pathname + page.search);
      controller = new AbortController();
      const mine = controller;
      stopButton.disabled = false;
      tapStatus.textContent = "Starting…";
      streamLines(`/api/tap?${params}`, mine.signal, (line) => {
        if (line.type === "event") onEvent(line);
        else if (line.type === "proxy") {
          const where = `${line.namespace}/${line.workload}`;
          tapStatus.textContent = line.state === "failed"
            ? `cannot tap ${where}: ${line.error || "unknown error"}`
            : line.state === "tapping" ? `tapping ${where}` : `tap of ${where} ended`;
          tapStatus.classList.toggle("bad", line.state === "failed");
        }
      }).then(
        () => { if (controller === mine) stop("Tap ended."); },
        (e) => { if (e.name !== "AbortError") stop(`Tap failed: ${e.message}`); },
      );
    });
    stopButton.addEventListener("click", () => stop("Stopped."));
    // A link with filters (`?path=/api/vote`) starts tapping at once.
    const asked = new URL(location.href).searchParams;
    if (["path", "method", "authority"].some((k) => asked.get(k))) form.requestSubmit();
  }
})();
