// whisperpool dashboard: one server-sent-events feed (/v1/dashboard/events), no build step.
// The feed sends "snapshot" first, pool events as they happen, and "status" every second.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const HISTORY_S = 300;          // the latency sparkline's span
  const GONE_KEEP_MS = 60000;     // how long a replaced or retired worker's card stays
  const TIMELINE_S = 600;         // the scale timeline's span
  const cards = new Map();        // "model/id" -> {el, last}
  const history = [];             // {t, p50, p95} of the default model
  const scaleEvents = [];         // {t, direction, before, after, reason}
  const failures = [];            // {t, text}
  let defaultModel = null;
  let source = null;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const fmt = (v, unit, digits) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits ?? 0) + (unit || ""));
  const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(0) + " ms");
  const clock = (t) => new Date(t).toLocaleTimeString();

  // -- login ---------------------------------------------------------------------------
  function showLogin() {
    if (source) { source.close(); source = null; }
    document.body.dataset.auth = "login";
    $("login").hidden = false;
    $("main").hidden = true;
    $("feed").textContent = "feed: log in";
    $("login-wrong").hidden = !new URLSearchParams(location.search).has("wrong");
  }

  // -- the feed --------------------------------------------------------------------------
  function connect() {
    $("login").hidden = true;
    $("main").hidden = false;
    source = new EventSource("/v1/dashboard/events");
    source.addEventListener("open", () => { $("feed").textContent = "feed: live"; });
    source.addEventListener("error", () => {
      $("feed").textContent = "feed: reconnecting";
      fetch("/dashboard/session", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) showLogin();
        else if (source && source.readyState === EventSource.CLOSED) { source = null; setTimeout(connect, 2000); }
      }).catch(() => {});
    });
    source.addEventListener("snapshot", (e) => status(JSON.parse(e.data)));
    source.addEventListener("status", (e) => status(JSON.parse(e.data)));
    source.addEventListener("worker_state_changed", (e) => {
      const d = JSON.parse(e.data);
      for (const c of cardsOf(d.worker_id)) {
        setState(c, d.new);
        if (d.error) note(c, d.error, "error");
      }
    });
    source.addEventListener("worker_failed", (e) => {
      const d = JSON.parse(e.data);
      for (const c of cardsOf(d.worker_id)) { setState(c, "failed"); note(c, "failed: " + d.reason, "error"); }
      failure(`worker ${d.worker_id} failed${d.during_warm_up ? " during warm-up" : ""}: ${d.reason}`);
    });
    source.addEventListener("warm_up_failed", (e) => {
      const d = JSON.parse(e.data);
      failure(`worker ${d.worker_id} failed to warm up: ${d.error}`);
    });
    source.addEventListener("worker_restarted", (e) => {
      const d = JSON.parse(e.data);
      for (const c of cardsOf(d.replaces)) note(c, `replaced by #${d.worker_id} (${d.reason})`);
      for (const c of cardsOf(d.worker_id)) note(c, `replaces #${d.replaces}`);
      pending.set(d.worker_id, `replaces #${d.replaces}`);
    });
    source.addEventListener("worker_recycled", (e) => {
      const d = JSON.parse(e.data);
      for (const c of cardsOf(d.worker_id)) note(c, `recycled (${d.reason}), successor #${d.successor}`);
      pending.set(d.successor, `successor of #${d.worker_id}`);
    });
    source.addEventListener("pool_scaled", (e) => {
      const d = JSON.parse(e.data);
      scaleEvents.push({ t: Date.now(), direction: d.direction, before: d.workers_before, after: d.workers_after, reason: d.reason });
      drawTimeline();
    });
    source.addEventListener("ready", (e) => {
      const d = JSON.parse(e.data);
      $("warmup-done").textContent = `warm-up ended: ${d.warm_workers} warm worker(s) in ${Number(d.elapsed_s).toFixed(1)} s`;
    });
  }
  const pending = new Map(); // a new worker's note, until its card exists

  // -- worker cards ------------------------------------------------------------------------
  function cardsOf(id) {
    const found = [];
    for (const [key, c] of cards) if (key.endsWith("/" + id)) found.push(c);
    return found;
  }

  function setState(c, state) {
    if (c.el.dataset.state === state) return;
    c.el.dataset.state = state;
    c.el.querySelector(".state").textContent = state;
    c.el.classList.remove("flash");
    void c.el.offsetWidth;  // restart the flash
    c.el.classList.add("flash");
    setTimeout(() => c.el.classList.remove("flash"), 900);
  }

  function note(c, text, cls) {
    const n = c.el.querySelector(".note");
    n.textContent = text;
    n.className = "note " + (cls || "muted");
  }

  const FIELDS = [
    ["pid", (w) => w.pid ?? "–"],
    ["served", (w) => w.requests_served],
    ["memory", (w) => fmt(w.rss_mb, " MiB")],
    ["checked", (w) => (w.check_age_s === null ? "never" : `${w.check_age_s} s ago (${fmt(w.check_ms, " ms")})`)],
    ["ping", (w) => fmt(w.ping_rtt_ms, " ms", 1)],
    ["windows", (w) => (w.warm_windows && w.warm_windows.length ? w.warm_windows.join(", ") : "–")],
    ["threads", (w) => w.threads || "–"],
    ["warm-up", (w) => fmt(w.warm_up_s, " s", 1)],
  ];

  function card(model, w) {
    const key = model + "/" + w.id;
    let c = cards.get(key);
    if (!c) {
      const e = el("article", "worker");
      e.dataset.workerId = w.id;
      e.dataset.model = model;
      const top = el("div", "top");
      const slot = el("span", "muted", "slot " + w.slot);
      if (w.express) {
        const tag = el("span", "express", "express");
        tag.title = "kept for requests that are not a long recording's pieces";
        slot.append(" ", tag);
      }
      top.append(el("span", "id", "#" + w.id), slot, el("span", "state", ""));
      const dl = el("dl");
      for (const [name] of FIELDS) { dl.append(el("dt", "", name)); const dd = el("dd"); dd.dataset.field = name; dl.append(dd); }
      e.append(top, dl, el("div", "note muted", ""));
      c = { el: e, last: Date.now(), gone: false };
      cards.set(key, c);
      if (pending.has(w.id)) { note(c, pending.get(w.id)); pending.delete(w.id); }
    }
    c.last = Date.now();
    c.gone = false;
    c.el.classList.remove("gone");
    setState(c, w.state);
    for (const [name, value] of FIELDS) c.el.querySelector(`dd[data-field="${name}"]`).textContent = value(w);
    if (w.recycling) note(c, "being recycled");
    if (w.error) note(c, w.error, "error");
    return c;
  }

  function modelSection(model) {
    let s = document.querySelector(`section.model[data-model="${CSS.escape(model)}"]`);
    if (!s) {
      s = el("section", "model");
      s.dataset.model = model;
      s.append(el("h3", "", model), el("div", "workers"));
      $("models").append(s);
    }
    return s.querySelector(".workers");
  }

  // -- a status snapshot -----------------------------------------------------------------
  function status(snap) {
    defaultModel = snap.default;
    const now = Date.now();
    const seen = new Set();
    for (const [model, st] of Object.entries(snap.models)) {
      const grid = modelSection(model);
      for (const w of st.workers) {
        const c = card(model, w);
        seen.add(model + "/" + w.id);
        if (c.el.parentNode !== grid) grid.append(c.el);
      }
    }
    for (const [key, c] of cards) {  // gone from the status: replaced, recycled or retired
      if (seen.has(key)) continue;
      if (!c.gone) {
        c.gone = true;
        c.el.classList.add("gone");
        const n = c.el.querySelector(".note");
        if (!n.textContent) note(c, c.el.dataset.state === "failed" ? "failed, replaced" : "retired");
      }
      if (now - c.last > GONE_KEEP_MS) { c.el.remove(); cards.delete(key); }
    }
    const st = snap.models[snap.default];
    const ready = snap.readiness[snap.default];
    const pill = $("readiness");
    pill.dataset.state = ready.status === "warming" ? "warming" : ready.status;
    pill.textContent = ready.status;
    $("warmup-bar").style.width = st.warm_up_progress + "%";
    $("warmup-bar").dataset.state = st.warm_up_progress >= 100 ? "warm" : "warming";
    $("warmup-text").textContent = `${st.warm_up_progress}% warmed up: ${st.warm_workers + st.busy_workers} of ${st.total_workers} worker(s) warm, ${st.warming_workers + st.cold_workers} starting, ${st.failed_workers} failed`;
    gauges(snap, st);
    history.push({ t: now, p50: st.latency_p50_s, p95: st.latency_p95_s });
    while (history.length && now - history[0].t > HISTORY_S * 1000) history.shift();
    drawLatency();
    drawTimeline();
    requests(snap);
    for (const [model, s] of Object.entries(snap.models)) {
      for (const w of s.workers) if (w.state === "failed" && w.error && !failures.some((f) => f.key === model + w.id)) {
        failure(`${model} worker ${w.id}: ${w.error}`, model + w.id);
      }
    }
  }

  function gauges(snap, st) {
    const total = (counts) => Object.values(counts || {}).reduce((a, b) => a + b, 0);
    const items = [
      ["queue", st.queue_depth],
      ["requests / s", Number(st.arrival_rate).toFixed(2)],
      ["p50", ms(st.latency_p50_s)],
      ["p95", ms(st.latency_p95_s)],
      ["workers warm", `${st.warm_workers + st.busy_workers} / ${st.total_workers}`],
      ["completed", st.requests_completed],
      ["failed requests", st.requests_failed],
      ["window fallbacks", total(st.window_fallbacks)],
      ["window retries", total(st.window_retries)],
      ["live streams", snap.live_streams],
      ["long recordings", st.requests.filter((r) => r.pieces_total !== 1).length],
      ["restarts", st.worker_restarts],
      ["recycled", st.workers_recycled],
    ];
    const box = $("gauges");
    if (box.children.length !== items.length) {
      box.replaceChildren(...items.map(([name]) => { const g = el("div", "gauge"); g.append(el("b"), el("span", "", name)); return g; }));
    }
    items.forEach(([, value], i) => { box.children[i].firstChild.textContent = value; });
    const reasons = { "window fallbacks": st.window_fallbacks, "window retries": st.window_retries };
    items.forEach(([name], i) => { if (name in reasons) box.children[i].title = JSON.stringify(reasons[name] || {}); });
  }

  function requests(snap) {
    const list = $("requests");
    const rows = [];
    for (const [model, st] of Object.entries(snap.models)) {
      for (const r of st.requests) {
        const where = r.position === null ? "running" : `queued, position ${r.position}`;
        const pieces = r.pieces_total === 1 ? "" : r.pieces_total === 0 ? ", planning" : `, pieces ${r.pieces_done} of ${r.pieces_total}`;
        rows.push(`${model} #${r.id}: ${Number(r.audio_s).toFixed(1)} s of audio, ${where}${pieces}`);
      }
    }
    list.replaceChildren(...(rows.length ? rows.map((t) => el("li", "", t)) : [el("li", "muted", "none")]));
  }

  function failure(text, key) {
    failures.unshift({ t: Date.now(), text, key });
    failures.length = Math.min(failures.length, 50);
    $("failures").replaceChildren(...failures.map((f) => el("li", "", `${clock(f.t)} ${f.text}`)));
  }

  // -- charts, drawn by hand -------------------------------------------------------------
  function drawLatency() {
    const canvas = $("latency");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight || 120;
    if (!w) return;
    canvas.width = w * dpr; canvas.height = h * dpr;
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    g.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const max = Math.max(0.05, ...history.map((p) => p.p95 || 0)) * 1.15;
    const now = Date.now();
    const x = (t) => w - ((now - t) / (HISTORY_S * 1000)) * w;
    const y = (v) => h - 14 - (v / max) * (h - 20);
    g.strokeStyle = style.getPropertyValue("--line"); g.lineWidth = 1;
    g.fillStyle = style.getPropertyValue("--muted"); g.font = "11px system-ui";
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      g.beginPath(); g.moveTo(0, y(v)); g.lineTo(w, y(v)); g.stroke();
      g.fillText((v * 1000).toFixed(0) + " ms", 2, f === 1 ? y(v) + 11 : y(v) - 2);
    }
    g.fillText("-5 min", 2, h - 2); g.fillText("now", w - 24, h - 2);
    for (const [field, color] of [["p50", "--processing"], ["p95", "--stopping"]]) {
      g.strokeStyle = style.getPropertyValue(color); g.lineWidth = 2; g.beginPath();
      let started = false;
      for (const p of history) {
        if (p[field] === null || p[field] === undefined) continue;
        if (started) g.lineTo(x(p.t), y(p[field])); else { g.moveTo(x(p.t), y(p[field])); started = true; }
      }
      g.stroke();
    }
    const last = history[history.length - 1];
    $("latency-now").textContent = last ? `now ${ms(last.p50)} / ${ms(last.p95)}` : "";
  }

  function drawTimeline() {
    const now = Date.now();
    const recent = scaleEvents.filter((e) => now - e.t < TIMELINE_S * 1000);
    const svgNS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNS, "svg");
    svg.setAttribute("viewBox", "0 0 600 56");
    svg.setAttribute("preserveAspectRatio", "none");
    const line = document.createElementNS(svgNS, "line");
    Object.entries({ x1: 0, x2: 600, y1: 28, y2: 28, stroke: "currentColor", "stroke-opacity": 0.25 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
    for (const e of recent) {
      const cx = 600 - ((now - e.t) / (TIMELINE_S * 1000)) * 600;
      const mark = document.createElementNS(svgNS, "path");
      const up = e.direction === "up", down = e.direction === "down";
      mark.setAttribute("d", up ? `M${cx - 6} 34 L${cx} 20 L${cx + 6} 34 Z` : down ? `M${cx - 6} 22 L${cx} 36 L${cx + 6} 22 Z` : `M${cx - 5} 23 L${cx + 5} 33 M${cx + 5} 23 L${cx - 5} 33`);
      mark.setAttribute("fill", up ? "var(--warm)" : down ? "var(--stopping)" : "none");
      mark.setAttribute("stroke", up || down ? "none" : "var(--failed)");
      mark.setAttribute("stroke-width", "2");
      const title = document.createElementNS(svgNS, "title");
      title.textContent = `${clock(e.t)} ${e.direction}: ${e.before} -> ${e.after} (${e.reason})`;
      mark.append(title);
      svg.append(mark);
    }
    $("timeline").replaceChildren(svg);
    const list = $("scale-list");
    const rows = scaleEvents.slice(-20).reverse().map((e) => el("li", "", `${clock(e.t)} ${e.direction}: ${e.before} → ${e.after} workers (${e.reason})`));
    list.replaceChildren(...(rows.length ? rows : [el("li", "muted", "none in the last 10 minutes")]));
  }

  // -- the drop zone -----------------------------------------------------------------------
  async function transcribe(file) {
    $("result").hidden = false;
    $("result-meta").textContent = `transcribing ${file.name} (${(file.size / 1024).toFixed(0)} KiB) ...`;
    $("result-text").textContent = "";
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("response_format", "verbose_json");
    const started = performance.now();
    try {
      const r = await fetch("/v1/audio/transcriptions", {
        method: "POST", body: form, credentials: "same-origin", headers: { "X-Whisperpool-Dashboard": "1" },
      });
      const took = ((performance.now() - started) / 1000).toFixed(2);
      const body = await r.json();
      if (!r.ok) {
        $("result-meta").textContent = `${r.status}: ${(body.error && body.error.message) || r.statusText}`;
        $("result-meta").className = "error";
        return;
      }
      $("result-meta").className = "muted";
      $("result-meta").textContent = `${file.name}: ${Number(body.duration).toFixed(2)} s of audio, language ${body.language}, answered in ${took} s; Server-Timing: ${r.headers.get("Server-Timing") || "–"}`;
      $("result-text").textContent = body.text;
    } catch (err) {
      $("result-meta").textContent = "the upload failed: " + err;
      $("result-meta").className = "error";
    }
  }

  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files.length) transcribe(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) transcribe(e.dataTransfer.files[0]);
  });
  window.addEventListener("resize", drawLatency);

  if (document.body.dataset.auth === "login") showLogin();
  else connect();
})();
