// rftwin operator dashboard: floor plan with the jammer-likelihood heat map, alarms (with what the
// interference is and the operator's acknowledgement), node health, per-node spectrum strip and
// residual history, fed by SSE. No framework and no external assets: plain DOM + SVG (+ one canvas to
// paint the heat map). Payloads are central/live.py's to_dict().
"use strict";
(() => {
  const SVGNS = "http://www.w3.org/2000/svg";
  const RANGE_DB = 20;        // colour scale saturates at ±RANGE_DB
  const HISTORY_S = 300;      // plotted span
  const KEEP_S = 900;         // kept span
  const NO_DATA_S = 10;       // "no data" warning after this long without a snapshot
  const SCALE = 15, PAD = 36; // floor plan: pixels per metre, margin
  const PALETTE = [[-1, [33, 102, 172]], [-0.5, [103, 169, 207]], [0, [247, 247, 247]],
                   [0.5, [239, 138, 98]], [1, [178, 24, 43]]];
  const KIND_TEXT = { residual: "Jammer suspected: twin residual anomaly",
                      saturation: "Jammer suspected: receiver saturation" };
  const CLASS_TEXT = { narrowband: "Narrowband jammer", "partial-band": "Partial-band jammer",
                       wideband: "Wideband jammer", sweeping: "Sweeping jammer",
                       deceptive: "Deceptive emitter" };
  // jammer likelihood 0 → 1: transparent pale yellow → orange → dark red
  const HEAT = [[0, [255, 237, 160]], [0.5, [253, 141, 60]], [1, [189, 0, 38]]];
  const HEAT_MIN = 0.02;      // likelihood below this is not painted
  const EXCESS_DB = 3;        // spectrum strip: a sub-band measured this far above its expectation is coloured
  const state = { site: null, snapshot: null, alarms: new Map(), nodes: [], history: [],
                  offsetNs: 0, lastSnapshotMs: 0, session: null,
                  ack: { pending: null, error: null },  // error: { alarmId, text } of the last failed acknowledgement
                  heatFor: null };                      // the likelihood map the heat layer shows
  const $ = (id) => document.getElementById(id);
  let px = (x) => x, py = (y) => y, scheduled = false;

  // ---------- helpers
  function svg(name, attrs = {}, parent = null, text = null) {
    const node = document.createElementNS(SVGNS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }
  function html(tag, attrs = {}, text = null) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== null) node.textContent = text;
    return node;
  }
  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const fmt = (x, d = 1, unit = "") => (isNum(x) ? `${x.toFixed(d)}${unit}` : "—");
  const signed = (x, d = 1) => (isNum(x) ? `${x < 0 ? "−" : "+"}${Math.abs(x).toFixed(d)}` : "—");
  const serverNowNs = () => Date.now() * 1e6 + state.offsetNs;
  const clock = (ns) => new Date(ns / 1e6).toLocaleTimeString("en-GB", { hour12: false });
  function duration(ns) {
    const s = Math.max(0, ns / 1e9);
    if (s < 10) return `${s.toFixed(1)} s`;
    if (s < 60) return `${Math.round(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }
  function residualColour(db) {
    const t = Math.max(-1, Math.min(1, db / RANGE_DB));
    for (let i = 1; i < PALETTE.length; i++) {
      const [t1, c1] = PALETTE[i];
      if (t <= t1) {
        const [t0, c0] = PALETTE[i - 1], f = (t - t0) / (t1 - t0);
        return `rgb(${c0.map((c, k) => Math.round(c + f * (c1[k] - c))).join(",")})`;
      }
    }
    return "rgb(178,24,43)";
  }
  function heatRgb(v) {
    const t = Math.max(0, Math.min(1, v));
    for (let i = 1; i < HEAT.length; i++) {
      const [t1, c1] = HEAT[i];
      if (t <= t1) {
        const [t0, c0] = HEAT[i - 1], f = (t - t0) / (t1 - t0);
        return c0.map((c, k) => Math.round(c + f * (c1[k] - c)));
      }
    }
    return HEAT[HEAT.length - 1][1];
  }
  const heatAlpha = (v) => (v < HEAT_MIN ? 0 : Math.round(255 * (0.25 + 0.6 * Math.min(1, v))));
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; render(); });
  }
  const activeAlarms = () => [...state.alarms.values()].filter((a) => a.state === "active")
    .sort((a, b) => b.start_ns - a.start_ns);
  const bandGrid = () => (state.site && state.site.band_plan ? state.site.band_plan.grid : []);
  // where an alarm puts the jammer: the most likely position of its characterisation, else the fit's
  const alarmPosition = (a) => (a.interference && a.interference.position_m) || a.suspected_position_m || null;

  // ---------- static drawing: hall, obstacles, SU markers, legend
  function drawSite(site) {
    const [W, H] = site.hall_size_m, map = $("map");
    map.setAttribute("viewBox", `0 0 ${W * SCALE + 2 * PAD} ${H * SCALE + 2 * PAD}`);
    px = (x) => PAD + x * SCALE;
    py = (y) => PAD + (H - y) * SCALE;
    map.replaceChildren();
    const defs = svg("defs", {}, map);
    const hatch = svg("pattern", { id: "hatch-metal", width: 6, height: 6, patternUnits: "userSpaceOnUse",
                                   patternTransform: "rotate(45)" }, defs);
    svg("rect", { width: 6, height: 6, class: "hatch-bg" }, hatch);
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }, hatch);
    const floor = svg("g", { id: "layer-floor" }, map);
    svg("rect", { x: px(0), y: py(H), width: W * SCALE, height: H * SCALE, class: "hall" }, floor);
    // the jammer-likelihood heat map lies on the floor, under the grid, obstacles and markers
    svg("image", { id: "heatmap", "data-state": "none", preserveAspectRatio: "none", visibility: "hidden" }, floor);
    for (let v = 5; v < Math.max(W, H); v += 5) {
      if (v < W) svg("line", { x1: px(v), y1: py(0), x2: px(v), y2: py(H), class: "grid" }, floor);
      if (v < H) svg("line", { x1: px(0), y1: py(v), x2: px(W), y2: py(v), class: "grid" }, floor);
    }
    for (let v = 0; v <= W; v += 10) svg("text", { x: px(v), y: py(0) + 16, class: "axis-label", "text-anchor": "middle" }, floor, `${v}`);
    for (let v = 0; v <= H; v += 10) svg("text", { x: px(0) - 6, y: py(v) + 4, class: "axis-label", "text-anchor": "end" }, floor, `${v}`);
    svg("text", { x: px(W), y: py(0) + 30, class: "axis-label", "text-anchor": "end" }, floor, "x (m) →");
    svg("text", { x: px(0) - 6, y: py(H) - 10, class: "axis-label", "text-anchor": "start" }, floor, "y (m) ↑");
    const obstacles = svg("g", { id: "layer-obstacles" }, map);
    for (const ob of site.obstacles) {
      const [x, y] = ob.min_m, [w, h] = ob.size_m;
      const g = svg("g", { class: "obstacle", "data-obstacle": ob.name, "data-material": ob.material }, obstacles);
      svg("title", {}, g, `${ob.name}: ${ob.material}, ${w}×${h}×${ob.size_m[2]} m`);
      svg("rect", { x: px(x), y: py(y + h), width: w * SCALE, height: h * SCALE }, g);
      svg("text", { x: px(x + w / 2), y: py(y + h / 2), class: "obstacle-label", "text-anchor": "middle",
                    transform: `rotate(-90 ${px(x + w / 2)} ${py(y + h / 2)})`, "dominant-baseline": "middle" }, g, ob.name);
    }
    svg("path", { id: "region-outline", class: "region-outline", "data-state": "none", "data-cells": 0, d: "" }, map);
    svg("g", { id: "layer-txs" }, map);
    const sus = svg("g", { id: "layer-sus" }, map);
    for (const su of site.sensing_units) {
      const g = svg("g", { class: "su-marker", "data-su": su.id, "data-state": "unknown",
                           transform: `translate(${px(su.position_m[0])} ${py(su.position_m[1])})` }, sus);
      svg("title", {}, g, su.id);
      svg("circle", { r: 15, class: "su-ring" }, g);
      svg("circle", { r: 10, class: "su-body su-dot" }, g);
      svg("path", { d: "M0 -13 13 0 0 13 -13 0Z", class: "su-body su-sat" }, g);
      svg("text", { y: -19, class: "su-label", "text-anchor": "middle" }, g, su.id);
      svg("text", { y: 27, class: "su-value", "text-anchor": "middle" }, g, "");
    }
    const jam = svg("g", { id: "jammer-marker", class: "jammer-marker", "data-state": "none", visibility: "hidden" }, map);
    svg("circle", { r: 22, class: "jam-pulse" }, jam);
    svg("circle", { r: 12, class: "jam-ring" }, jam);
    svg("path", { d: "M0 -20V-6M0 6V20M-20 0H-6M6 0H20", class: "jam-cross" }, jam);
    svg("text", { y: -26, class: "jam-label", "text-anchor": "middle" }, jam, "Suspected jammer");
    $("site-name").textContent = `${site.name} · ${W}×${H} m · ${(site.frequency_hz / 1e9).toFixed(2)} GHz · ${site.sensing_units.length} SUs`;
    const bp = site.band_plan;
    $("spectrum-band").textContent = bp
      ? `${(bp.center_hz / 1e9).toFixed(3)} GHz · ${(bp.bandwidth_hz / 1e6).toFixed(0)} MHz · ${bp.prbs} PRBs in ${bp.subbands} sub-bands` +
        ` (${(bp.grid[0].width_hz / 1e6).toFixed(2)} MHz each)`
      : "no band plan";
    drawLegend();
  }
  function drawLegend() {
    const bar = $("legend-bar"), defs = svg("defs", {}, bar);
    const grad = svg("linearGradient", { id: "residual-gradient" }, defs);
    for (const [t] of PALETTE) svg("stop", { offset: `${(t + 1) * 50}%`, "stop-color": residualColour(t * RANGE_DB) }, grad);
    svg("rect", { x: 10, y: 2, width: 220, height: 12, fill: "url(#residual-gradient)", class: "legend-rect" }, bar);
    for (let v = -RANGE_DB; v <= RANGE_DB; v += RANGE_DB / 2) {
      const x = 10 + ((v + RANGE_DB) / (2 * RANGE_DB)) * 220;
      svg("line", { x1: x, y1: 14, x2: x, y2: 18, class: "tick" }, bar);
      svg("text", { x, y: 30, "text-anchor": "middle", class: "tick-label" }, bar, v === 0 ? "0" : signed(v, 0));
    }
    const lbar = $("likelihood-bar"), ldefs = svg("defs", {}, lbar);
    const lgrad = svg("linearGradient", { id: "likelihood-gradient" }, ldefs);
    for (let t = 0; t <= 1.0001; t += 0.25) {
      svg("stop", { offset: `${t * 100}%`, "stop-color": `rgb(${heatRgb(t).join(",")})`, "stop-opacity": (heatAlpha(Math.max(t, HEAT_MIN)) / 255).toFixed(2) }, lgrad);
    }
    svg("rect", { x: 10, y: 2, width: 140, height: 12, fill: "url(#likelihood-gradient)", class: "legend-rect" }, lbar);
    for (const t of [0, 0.5, 1]) {
      svg("line", { x1: 10 + t * 140, y1: 14, x2: 10 + t * 140, y2: 18, class: "tick" }, lbar);
      svg("text", { x: 10 + t * 140, y: 30, "text-anchor": "middle", class: "tick-label" }, lbar, t === 0.5 ? "0.5" : `${t}`);
    }
  }

  // ---------- dynamic rendering
  function render() {
    renderMap();
    renderHeat();
    renderBanner();
    renderSpectrum();
    renderSummary();
    renderNodes();
    renderAlarmLog();
    renderHistory();
  }
  function renderMap() {
    const snap = state.snapshot, active = activeAlarms();
    const affected = new Set(active.flatMap((a) => a.affected_sus || []));
    const bySu = new Map((snap ? snap.sus : []).map((s) => [s.su_id, s]));
    for (const g of document.querySelectorAll(".su-marker")) {
      const s = bySu.get(g.dataset.su);
      const st = !s ? "unknown" : s.saturated ? "saturated" : s.stale ? "stale" : "ok";
      g.dataset.state = st;
      g.classList.toggle("affected", affected.has(g.dataset.su));
      const r = s && isNum(s.residual_db) ? s.residual_db : null;
      g.style.setProperty("--su-fill", st === "saturated" ? residualColour(RANGE_DB) : r !== null ? residualColour(r) : "#b9bec5");
      g.querySelector(".su-value").textContent = st === "saturated" ? "SAT" : st === "stale" ? "stale" : r !== null ? `${signed(r)} dB` : "";
      g.querySelector("title").textContent = !s ? g.dataset.su
        : `${s.su_id} (${st}): measured ${fmt(s.measured_dbm)} dBm, predicted ${fmt(s.predicted_dbm)} dBm, residual ${signed(s.residual_db)} dB`;
    }
    const txs = $("layer-txs");
    if (txs) {
      txs.replaceChildren();
      for (const tx of snap ? snap.txs : []) {
        const g = svg("g", { class: "tx-marker", "data-tx": tx.tx_id, transform: `translate(${px(tx.position_m[0])} ${py(tx.position_m[1])})` }, txs);
        svg("title", {}, g, `${tx.tx_id}: ${fmt(tx.power_dbm)} dBm at (${fmt(tx.position_m[0])}, ${fmt(tx.position_m[1])}) m, estimated`);
        svg("path", { d: "M0 -9 8 6H-8Z" }, g);
        svg("text", { x: 11, y: 4, class: "tx-label" }, g, tx.tx_id);
      }
    }
    const jam = $("jammer-marker");
    if (!jam) return;
    const withPos = active.find(alarmPosition);
    const pos = withPos ? alarmPosition(withPos) : snap && snap.anomalous ? snap.suspected_position_m : null;
    jam.dataset.state = pos ? "active" : "none";
    jam.setAttribute("visibility", pos ? "visible" : "hidden");
    if (pos) jam.setAttribute("transform", `translate(${px(pos[0])} ${py(pos[1])})`);
  }
  // ---------- jammer likelihood over the floor (the newest active alarm that has one) and its 90 % region
  function renderHeat() {
    const img = $("heatmap"), outline = $("region-outline");
    if (!img || !outline) return;
    const a = activeAlarms().find((x) => x.interference && (x.interference.likelihood || (x.interference.region_m || []).length));
    const inf = a ? a.interference : null, lk = inf ? inf.likelihood : null;
    if (!lk) {
      img.dataset.state = "none";
      img.setAttribute("visibility", "hidden");
      img.removeAttribute("href");
      img.removeAttribute("data-alarm-id");
      state.heatFor = null;
    } else if (state.heatFor !== lk) {
      state.heatFor = lk;
      paintHeat(img, lk);
      Object.assign(img.dataset, { state: "active", alarmId: a.id });
    }
    if (!inf || !(inf.region_m || []).length) {
      outline.dataset.state = "none";
      outline.dataset.cells = 0;
      outline.setAttribute("d", "");
    } else {
      outline.setAttribute("d", regionPath(inf.region_m, inf.region_cell_m));
      Object.assign(outline.dataset, { state: "active", cells: inf.region_m.length, alarmId: a.id });
    }
    $("legend-likelihood").hidden = !lk;
    $("legend-region").hidden = !(inf && (inf.region_m || []).length);
  }
  function paintHeat(img, lk) {
    const [rows, cols] = lk.shape, canvas = document.createElement("canvas");
    canvas.width = cols;
    canvas.height = rows;
    const ctx = canvas.getContext("2d"), pixels = ctx.createImageData(cols, rows);
    let peak = -1, peakAt = 0;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = lk.values[r * cols + c], o = ((rows - 1 - r) * cols + c) * 4;  // row 0 is the lowest y
        if (!isNum(v)) continue;
        if (v > peak) { peak = v; peakAt = r * cols + c; }
        const [R, G, B] = heatRgb(v);
        pixels.data.set([R, G, B, heatAlpha(v)], o);
      }
    }
    ctx.putImageData(pixels, 0, 0);
    const [x0, y0] = lk.origin_m, w = cols * lk.cell_m, h = rows * lk.cell_m;
    const pr = Math.floor(peakAt / cols), pc = peakAt % cols;
    img.setAttribute("href", canvas.toDataURL("image/png"));
    for (const [k, v] of Object.entries({ x: px(x0), y: py(y0 + h), width: w * SCALE, height: h * SCALE, visibility: "visible" })) img.setAttribute(k, v);
    Object.assign(img.dataset, { rows, cols, cellM: lk.cell_m,
                                 peakM: `${(x0 + (pc + 0.5) * lk.cell_m).toFixed(2)},${(y0 + (pr + 0.5) * lk.cell_m).toFixed(2)}` });
  }
  // the outline of a union of square cells: every cell edge that no other cell of the region shares
  function regionPath(centres, cell) {
    const [ax, ay] = centres[0], key = (i, j) => `${i},${j}`;
    const idx = centres.map(([x, y]) => [Math.round((x - ax) / cell), Math.round((y - ay) / cell)]);
    const cells = new Set(idx.map(([i, j]) => key(i, j)));
    const X = (i) => px(ax + (i - 0.5) * cell).toFixed(1), Y = (j) => py(ay + (j - 0.5) * cell).toFixed(1);
    let d = "";
    for (const [i, j] of idx) {
      if (!cells.has(key(i, j - 1))) d += `M${X(i)} ${Y(j)}H${X(i + 1)}`;
      if (!cells.has(key(i, j + 1))) d += `M${X(i)} ${Y(j + 1)}H${X(i + 1)}`;
      if (!cells.has(key(i - 1, j))) d += `M${X(i)} ${Y(j)}V${Y(j + 1)}`;
      if (!cells.has(key(i + 1, j))) d += `M${X(i + 1)} ${Y(j)}V${Y(j + 1)}`;
    }
    return d;
  }

  function renderBanner() {
    const banner = $("alarm-banner"), active = activeAlarms();
    if (!active.length) {
      banner.hidden = true;
      banner.dataset.state = "none";
      banner.removeAttribute("data-alarm-id");
      return;
    }
    const a = active[0], thr = state.snapshot ? state.snapshot.threshold : null, inf = a.interference || null;
    Object.assign(banner.dataset, { state: "active", alarmId: a.id, kind: a.kind, acknowledged: a.acknowledged_by ? "yes" : "no" });
    banner.hidden = false;
    $("alarm-kind").textContent = inf
      ? `${CLASS_TEXT[inf.interference_class] || `Interference (${inf.interference_class})`} suspected: ${inf.subbands_text}`
      : KIND_TEXT[a.kind] || `Alarm: ${a.kind}`;
    $("alarm-since").textContent = `since ${clock(a.start_ns)} (${duration(serverNowNs() - a.start_ns)})`;
    $("alarm-more").textContent = active.length > 1 ? `+${active.length - 1} more active` : "";
    $("alarm-sus").replaceChildren(...(a.affected_sus || []).flatMap((id) => [html("span", { class: "alarm-su", "data-su": id }, id), " "]));
    $("alarm-score").textContent = isNum(a.peak_score) ? `${a.peak_score.toFixed(2)}${isNum(thr) ? ` (threshold ${thr.toFixed(2)})` : ""}` : "n/a (no score)";
    const p = alarmPosition(a);
    $("alarm-position").textContent = p ? `x ${p[0].toFixed(1)} m, y ${p[1].toFixed(1)} m` +
      (inf && (inf.region_m || []).length ? ` (90 % region: ${(inf.region_m.length * inf.region_cell_m ** 2).toFixed(0)} m²)` : "") : "not localised";
    $("alarm-ack").textContent = a.acknowledged_by
      ? `acknowledged by ${a.acknowledged_by}${a.acknowledged_ns ? ` at ${clock(a.acknowledged_ns)}` : ""}` : "unacknowledged";
    // what the interference is and what to do (alarms without it, wideband-only or saturation, show none)
    $("alarm-interference").hidden = !inf;
    if (inf) {
      const cls = $("alarm-class");
      cls.textContent = inf.interference_class;
      cls.dataset.class = inf.interference_class;
      $("alarm-subbands").textContent = inf.subbands_text;
      $("alarm-subbands").dataset.subbands = (inf.subbands || []).join(",");
      $("alarm-eirp").textContent = isNum(inf.eirp_dbm) ? `${inf.eirp_dbm.toFixed(1)} dBm` : "not estimated";
      $("alarm-pattern").textContent = inf.time_pattern === "duty-cycled" && isNum(inf.duty)
        ? `duty-cycled (on ${Math.round(inf.duty * 100)} % of the time)` : inf.time_pattern;
      $("alarm-mimics-item").hidden = !inf.mimics_tx;
      $("alarm-mimics").textContent = inf.mimics_tx ? `TX ${inf.mimics_tx}` : "";
      $("alarm-countermeasure").textContent = inf.countermeasure;
    }
    // acknowledging: an operator's session only (a viewer's would get 403); the first acknowledgement counts
    const btn = $("alarm-ack-button"), mayAck = !!state.session && state.session.role === "operator";
    btn.hidden = !mayAck || !!a.acknowledged_by;
    btn.disabled = state.ack.pending === a.id;
    btn.textContent = state.ack.pending === a.id ? "Acknowledging…" : "Acknowledge";
    btn.dataset.alarmId = a.id;
    // a failed acknowledgement stays said until the alarm is acknowledged (by anyone) or another one shows
    const err = $("alarm-ack-error");
    const e = state.ack.error && state.ack.error.alarmId === a.id && !a.acknowledged_by ? state.ack.error.text : "";
    err.hidden = !e;
    err.textContent = e;
  }
  async function acknowledge(alarmId) {
    if (state.ack.pending !== null) return;
    state.ack = { pending: alarmId, error: null };
    schedule();
    let error = null;
    try {
      const resp = await fetch(`api/v1/alarms/${encodeURIComponent(alarmId)}/ack`, {
        method: "POST", credentials: "same-origin",
        headers: { "X-CSRF-Token": state.session ? state.session.csrf_token : "" } });
      if (resp.status === 401) { toLogin(); return; }
      let body = null;
      try { body = await resp.json(); } catch (_) { body = null; }
      if (resp.ok && body && body.id !== undefined) {
        state.alarms.set(body.id, body);  // the SSE "alarm" event brings the same
      } else {
        const detail = body && body.detail ? body.detail : resp.statusText || "no detail";
        error = resp.status === 403 ? `Not allowed to acknowledge: ${detail}`
          : `Acknowledging failed (HTTP ${resp.status}): ${detail}`;
      }
    } catch (err) {
      error = `Acknowledging failed: ${err.message}`;
    }
    state.ack = { pending: null, error: error ? { alarmId, text: error } : null };
    schedule();
  }
  $("alarm-ack-button").addEventListener("click", (ev) => {
    const id = Number(ev.currentTarget.dataset.alarmId);
    if (Number.isInteger(id)) acknowledge(id);
  });

  // ---------- spectrum strip: per SU, measured vs expected power per sub-band of the band plan
  function renderSpectrum() {
    const strip = $("spectrum-strip"), snap = state.snapshot;
    if (!snap) return;
    const active = activeAlarms();
    const affectedSb = new Set(active.flatMap((a) => (a.interference ? a.interference.subbands || [] : [])));
    const affectedSu = new Set(active.filter((a) => a.interference).flatMap((a) => a.affected_sus || []));
    const busy = new Set(snap.busy_subbands || []);
    const liveSb = new Set(snap.affected_subbands || []);  // where this window's spectral test sees excess
    const grid = bandGrid();
    const n = Math.max(grid.length, ...snap.sus.map((s) => (s.subband_predicted_dbm || []).length));
    const vals = snap.sus.flatMap((s) => [...(s.subband_measured_dbm || []), ...(s.subband_predicted_dbm || [])]).filter(isNum);
    strip.dataset.state = n && vals.length ? "live" : "no-data";
    strip.dataset.affected = [...affectedSb].sort((a, b) => a - b).join(",");
    strip.dataset.busy = [...busy].sort((a, b) => a - b).join(",");
    if (!n || !vals.length) {
      strip.replaceChildren(html("p", { class: "placeholder" }, "No sub-band readings in this window (no band plan, or the nodes measure wideband only)."));
      return;
    }
    let lo = Math.floor(Math.min(...vals) / 10) * 10, hi = Math.ceil(Math.max(...vals) / 10) * 10;
    if (hi - lo < 20) hi = lo + 20;
    const W = 300, H = 100, L = 30, R = 4, T = 9, B = 22, cw = (W - L - R) / n;
    const Y = (v) => T + (H - T - B) * (1 - (Math.max(lo, Math.min(hi, v)) - lo) / (hi - lo));
    strip.replaceChildren(...[...snap.sus].sort((a, b) => a.su_id.localeCompare(b.su_id)).map((su) => {
      const meas = su.subband_measured_dbm || [], pred = su.subband_predicted_dbm || [];
      const st = !pred.length ? "no-data" : su.stale || !meas.some(isNum) ? "stale" : "ok";
      const fig = html("figure", { class: "spectrum-su", "data-su": su.su_id, "data-state": st,
                                   "data-affected": affectedSu.has(su.su_id) ? "true" : "false" });
      const excesses = meas.map((m, k) => (isNum(m) && isNum(pred[k]) ? m - pred[k] : null)).filter(isNum);
      const worst = excesses.length ? Math.max(...excesses) : null;
      const cap = html("figcaption");
      cap.append(html("strong", {}, su.su_id), " ",
                 html("span", { class: "spectrum-note" }, st === "no-data" ? "no sub-band readings" : st === "stale" ? "stale"
                   : `max excess ${signed(worst)} dB`));
      const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "spectrum-plot", role: "img",
                                "aria-label": `${su.su_id}: measured and expected power per sub-band` });
      svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "spectrum-bg" }, plot);
      for (const v of [lo, (lo + hi) / 2, hi]) {
        svg("line", { x1: L, x2: W - R, y1: Y(v), y2: Y(v), class: "spectrum-hgrid" }, plot);
        svg("text", { x: L - 3, y: Y(v) + 3, "text-anchor": "end", class: "spectrum-tick" }, plot, `${Math.round(v)}`);
      }
      for (let k = 0; k < n; k++) {
        const m = meas[k], e = pred[k], x = L + k * cw, sb = grid[k];
        const isBusy = busy.has(k), isAff = affectedSb.has(k), ex = isNum(m) && isNum(e) ? m - e : null;
        const g = svg("g", { class: "sb", "data-subband": k, "data-busy": isBusy ? "true" : "false",
                             "data-affected": isAff ? "true" : "false", "data-excess-seen": liveSb.has(k) ? "true" : "false",
                             "data-measured": isNum(m) ? m.toFixed(1) : "",
                             "data-expected": isNum(e) ? e.toFixed(1) : "", "data-excess": isNum(ex) ? ex.toFixed(1) : "" }, plot);
        const where = sb ? ` (PRBs ${sb.first_prb}–${sb.last_prb}, ${(sb.center_hz / 1e6).toFixed(1)} MHz, ${(sb.width_hz / 1e6).toFixed(2)} MHz wide)` : "";
        svg("title", {}, g, `${su.su_id} sub-band ${k}${where}: measured ${isNum(m) ? `${m.toFixed(1)} dBm` : "none (stale)"}, ` +
            `expected ${fmt(e)} dBm${isNum(ex) ? `, excess ${signed(ex)} dB` : ""}; ${isBusy ? "scheduled to a legitimate TX" : "idle"}` +
            `${isAff ? "; affected by the active alarm" : ""}`);
        if (isAff) svg("rect", { x: x + 0.5, y: T, width: cw - 1, height: H - T - B, class: "sb-affected" }, g);
        if (isNum(m)) svg("rect", { x: x + 2, y: Y(m), width: Math.max(1, cw - 4), height: Math.max(0.5, H - B - Y(m)),
                                    class: "sb-measured", fill: isNum(ex) && ex > EXCESS_DB ? residualColour(ex) : "#c5ced8" }, g);
        else svg("path", { d: `M${x + 3} ${H - B - 3}L${x + cw - 3} ${H - B - 9}`, class: "sb-nodata" }, g);
        if (isNum(e)) svg("line", { x1: x + 1, x2: x + cw - 1, y1: Y(e), y2: Y(e), class: "sb-expected" }, g);
        if (liveSb.has(k)) svg("path", { d: `M${x + cw / 2 - 3} ${T - 7}h6l-3 5Z`, class: "sb-seen" }, g);
        svg("rect", { x: x + 0.5, y: H - B + 2, width: cw - 1, height: 5, class: isBusy ? "sb-busy" : "sb-idle" }, g);
        svg("text", { x: x + cw / 2, y: H - 4, "text-anchor": "middle", class: isAff ? "sb-id sb-id-affected" : "sb-id" }, g, `${k}`);
      }
      fig.append(cap, plot);
      return fig;
    }));
  }
  function renderSummary() {
    const snap = state.snapshot;
    const ageS = state.lastSnapshotMs ? (Date.now() - state.lastSnapshotMs) / 1000 : null;
    const upd = $("last-update");
    upd.dataset.state = ageS === null ? "none" : ageS > NO_DATA_S ? "stale" : "fresh";
    upd.textContent = !snap ? "—" : ageS > NO_DATA_S ? `no data for ${duration(ageS * 1e9)}` : clock(snap.t_ns);
    if (!snap) return;
    const verdict = snap.anomalous ? "anomalous" : isNum(snap.score) ? "normal" : "no-score";
    $("window-summary").dataset.verdict = verdict;
    const v = $("sum-verdict");
    v.dataset.state = verdict;
    v.textContent = snap.anomalous ? `Anomalous${snap.reason ? ` (${snap.reason})` : ""}` : isNum(snap.score) ? "Normal" : (snap.reason || "No score");
    $("sum-time").textContent = clock(snap.t_ns);
    $("sum-score").textContent = `${fmt(snap.score, 2)} / ${fmt(snap.threshold, 2)}`;
    const stale = snap.sus.filter((s) => s.stale).length, sat = snap.sus.filter((s) => s.saturated).length;
    $("sum-sus").textContent = `${snap.sus.length - stale} of ${snap.sus.length} reporting · ${stale} stale · ${sat} saturated`;
    const onAir = snap.txs.filter((t) => t.allocation === null || t.allocation === undefined || t.allocation.length).length;
    $("sum-txs").textContent = `${onAir} on air` + (onAir < snap.txs.length ? ` · ${snap.txs.length - onAir} idle` : "") +
      ((snap.busy_subbands || []).length ? ` · ${snap.busy_subbands.length} sub-bands scheduled` : "");
    // the spectral test (sub-band residuals), when the detection loop runs one
    $("sum-spectral-item").hidden = !isNum(snap.spectral_score);
    $("sum-spectral").textContent = isNum(snap.spectral_score) ? `${fmt(snap.spectral_score, 2)} / ${fmt(snap.spectral_threshold, 2)}` +
      ((snap.affected_subbands || []).length ? ` · excess in ${snap.affected_subbands.join(", ")}` : "") : "—";
    $("detector-status").textContent = snap.detector ? `${snap.detector} · ${fmt(snap.score, 2)} / ${fmt(snap.threshold, 2)}` : "none running";
    const frac = isNum(snap.score) && isNum(snap.threshold) && snap.threshold > 0 ? snap.score / (2 * snap.threshold) : 0;
    const meter = $("score-meter");
    meter.style.width = `${Math.max(0, Math.min(1, frac)) * 100}%`;
    meter.dataset.state = snap.anomalous ? "anomalous" : "normal";
  }
  function renderNodes() {
    const body = $("node-table").tBodies[0], now = serverNowNs();
    if (!state.nodes.length) return;
    body.replaceChildren(...[...state.nodes].sort((a, b) => a.node_id.localeCompare(b.node_id)).map((n) => {
      const status = n.saturated ? "saturated" : n.healthy ? "healthy" : "stale";
      const tr = html("tr", { "data-node": n.node_id, "data-status": status });
      if (n.detail) tr.title = n.detail;
      const badge = html("span", { class: "badge", "data-status": status }, status);
      const cells = [html("th", { scope: "row" }, n.node_id), html("td"),
        html("td", { class: "num" }, n.last_seen_ns ? `${duration(now - n.last_seen_ns)} ago` : "never"),
        html("td", { class: "num" }, isNum(n.last_power_dbm) ? `${n.last_power_dbm.toFixed(1)} dBm` : "—"),
        html("td", { class: "num" }, (n.records ?? 0).toLocaleString("en-US"))];
      cells[1].appendChild(badge);
      if (n.spool && n.spool.full) {  // the node's disk is full: it drops or refuses readings
        tr.dataset.spool = "full";
        cells[1].appendChild(html("span", { class: "badge spool-full", title: `dropped ${n.spool.dropped}, ` +
          `refused ${n.spool.refused}, ${n.spool.free_bytes} B free` }, "spool full"));
      }
      tr.append(...cells);
      return tr;
    }));
  }
  function renderAlarmLog() {
    const alarms = [...state.alarms.values()].sort((a, b) => b.start_ns - a.start_ns).slice(0, 6);
    if (!alarms.length) return;
    $("alarm-log").replaceChildren(...alarms.map((a) => {
      const li = html("li", { class: "alarm-entry", "data-alarm-id": a.id, "data-state": a.state });
      const end = a.end_ns ? `cleared ${clock(a.end_ns)} after ${duration(a.end_ns - a.start_ns)}` : "active";
      const what = a.interference ? ` ${a.interference.interference_class}, ${a.interference.subbands_text}` : "";
      const ack = a.acknowledged_by ? ` · ack ${a.acknowledged_by}` : "";
      li.append(html("span", { class: "pill", "data-state": a.state }, a.state),
        html("span", { class: "alarm-entry-text" }, `#${a.id} ${a.kind}${what} · ${clock(a.start_ns)} · ${end} · ${(a.affected_sus || []).join(", ") || "no SU"}${ack}`));
      return li;
    }));
  }
  function renderHistory() {
    const plot = $("history"), w = Math.max(400, plot.clientWidth || 900), h = 250;
    plot.setAttribute("viewBox", `0 0 ${w} ${h}`);
    plot.replaceChildren();
    const hist = state.history;
    if (!hist.length) { svg("text", { x: w / 2, y: h / 2, class: "empty", "text-anchor": "middle" }, plot, "Waiting for snapshots…"); return; }
    const t1 = hist[hist.length - 1].t_ns, t0 = t1 - HISTORY_S * 1e9;
    const pts = hist.filter((s) => s.t_ns >= t0);
    const L = 52, R = 16, X = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
    const panels = [{ top: 22, height: 112, title: "Residual (dB)" }, { top: 168, height: 52, title: "Detector score" }];
    const all = pts.flatMap((s) => Object.values(s.residuals).filter(isNum));
    const lo = Math.min(-10, Math.floor(Math.min(...all, 0) / 5) * 5), hi = Math.max(10, Math.ceil(Math.max(...all, 0) / 5) * 5);
    const sMax = Math.max(1e-9, ...pts.flatMap((s) => [s.score, s.threshold].filter(isNum))) * 1.15;
    panels[0].Y = (v) => panels[0].top + panels[0].height * (1 - (v - lo) / (hi - lo));
    panels[1].Y = (v) => panels[1].top + panels[1].height * (1 - v / sMax);
    for (const p of panels) {
      svg("rect", { x: L, y: p.top, width: w - L - R, height: p.height, class: "plot-bg" }, plot);
      svg("text", { x: L, y: p.top - 7, class: "axis-label" }, plot, p.title);
      for (const s of pts) if (s.anomalous) {
        svg("rect", { x: X(s.t_ns) - 1.5, y: p.top, width: 3, height: p.height, class: "anomalous-band" }, plot);
      }
    }
    const ticks0 = [lo, 0, hi].concat(hi - lo > 30 ? [(lo + hi) / 2] : []);
    for (const v of ticks0) {
      svg("line", { x1: L, x2: w - R, y1: panels[0].Y(v), y2: panels[0].Y(v), class: v === 0 ? "zero" : "hgrid" }, plot);
      svg("text", { x: L - 6, y: panels[0].Y(v) + 4, "text-anchor": "end", class: "tick-label" }, plot, v === 0 ? "0" : signed(v, 0));
    }
    for (const v of [0, sMax / 1.15]) svg("text", { x: L - 6, y: panels[1].Y(v) + 4, "text-anchor": "end", class: "tick-label" }, plot, v.toFixed(1));
    const line = (vals, Y, cls, title) => {
      let d = "", pen = false;
      vals.forEach(([t, v]) => { if (isNum(v)) { d += `${pen ? "L" : "M"}${X(t).toFixed(1)} ${Y(v).toFixed(1)}`; pen = true; } else pen = false; });
      if (d) { const path = svg("path", { d, class: cls }, plot); if (title) svg("title", {}, path, title); }
    };
    const ids = [...new Set(pts.flatMap((s) => Object.keys(s.residuals)))];
    for (const id of ids) line(pts.map((s) => [s.t_ns, s.residuals[id]]), panels[0].Y, "su-line", id);
    const stats = pts.map((s) => { const v = Object.values(s.residuals).filter(isNum);
      return [s.t_ns, v.length ? Math.max(...v) : null, v.length ? v.reduce((a, b) => a + b, 0) / v.length : null]; });
    line(stats.map(([t, m]) => [t, m]), panels[0].Y, "max-line", "max residual");
    line(stats.map(([t, , m]) => [t, m]), panels[0].Y, "mean-line", "mean residual");
    line(pts.map((s) => [s.t_ns, s.threshold]), panels[1].Y, "thr-line", "threshold");
    line(pts.map((s) => [s.t_ns, s.score]), panels[1].Y, "score-line", "detector score");
    for (let k = 0; k <= 5; k++) {
      const t = t0 + (k * (t1 - t0)) / 5;
      svg("text", { x: X(t), y: h - 6, "text-anchor": k === 0 ? "start" : k === 5 ? "end" : "middle", class: "tick-label" }, plot, clock(t));
    }
    const key = [["max-line", "max"], ["mean-line", "mean"], ["su-line", "per SU"], ["score-line", "score"], ["thr-line", "threshold"]];
    key.forEach(([cls, label], i) => {
      const x = w - R - 400 + i * 80;
      svg("line", { x1: x, x2: x + 18, y1: 11, y2: 11, class: cls }, plot);
      svg("text", { x: x + 22, y: 15, class: "tick-label" }, plot, label);
    });
  }

  // ---------- data
  function summarize(snap) {
    return { t_ns: snap.t_ns, score: snap.score, threshold: snap.threshold, anomalous: !!snap.anomalous,
             residuals: Object.fromEntries(snap.sus.map((s) => [s.su_id, s.residual_db])) };
  }
  function pushHistory(s) {
    const hist = state.history;
    if (hist.length && s.t_ns <= hist[hist.length - 1].t_ns) return;
    hist.push(s);
    while (hist.length && hist[0].t_ns < s.t_ns - KEEP_S * 1e9) hist.shift();
  }
  function setAlarms(data) {
    if (Array.isArray(data.alarms)) {
      state.alarms = new Map(data.alarms.map((a) => [a.id, a]));
    } else if (data && data.id !== undefined) {
      state.alarms.set(data.id, data);
    }
  }
  const handlers = {
    hello(data) {
      state.offsetNs = data.server_time_ns - Date.now() * 1e6;
      state.history = [];
      (data.history || []).forEach(pushHistory);
      setAlarms({ alarms: data.alarms || [] });
    },
    snapshot(data) {
      state.snapshot = data;
      state.lastSnapshotMs = Date.now();
      pushHistory(summarize(data));
    },
    alarm: setAlarms,
    nodes(data) {
      const list = Array.isArray(data) ? data : Array.isArray(data.nodes) ? data.nodes : Object.values(data);
      state.nodes = list.filter((n) => n && n.node_id);
    },
  };
  function setConn(s, text) {
    const c = $("conn-status");
    c.dataset.state = s;
    c.textContent = text;
  }
  // The session cookie (HttpOnly) authenticates every request of the page, EventSource's included;
  // its CSRF token goes with requests that change something. An ended session sends us to the login.
  const toLogin = () => window.location.replace("login");
  async function loadSession() {
    const resp = await fetch("api/v1/session", { credentials: "same-origin" });
    if (resp.status === 401) { toLogin(); return null; }
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    state.session = await resp.json();
    $("session-user").textContent = `${state.session.name} (${state.session.role})`;
    return state.session;
  }
  $("logout").addEventListener("click", async () => {
    await fetch("api/v1/session", { method: "DELETE", credentials: "same-origin",
                                    headers: { "X-CSRF-Token": state.session ? state.session.csrf_token : "" } });
    toLogin();
  });
  function connect() {
    const es = new EventSource("api/v1/events");
    es.onopen = () => setConn("open", "Live");
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        setConn("closed", "Disconnected");
        loadSession().then((s) => { if (s) setTimeout(connect, 3000); }, () => setTimeout(connect, 3000));
      } else setConn("connecting", "Reconnecting…");
    };
    for (const [kind, fn] of Object.entries(handlers)) {
      es.addEventListener(kind, (ev) => {
        try { fn(JSON.parse(ev.data)); } catch (err) { console.error(`bad ${kind} event`, err); }
        schedule();
      });
    }
  }
  async function start() {
    try {
      if (!(await loadSession())) return;
      const resp = await fetch("api/v1/site", { credentials: "same-origin" });
      if (resp.status === 401) { toLogin(); return; }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      state.site = await resp.json();
      drawSite(state.site);
    } catch (err) {
      $("site-name").textContent = `Cannot load the floor plan (${err.message}); retrying…`;
      setTimeout(start, 3000);
      return;
    }
    connect();
    setInterval(schedule, 1000);
    window.addEventListener("resize", schedule);
    schedule();
  }
  start();
})();
