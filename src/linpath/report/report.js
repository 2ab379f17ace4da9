// linpath report.html: draws the inlined data (see report/html.py) as SVG; no network, no library.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const W = 470, H = 290, M = { left: 66, right: 14, top: 14, bottom: 40 };
  const QUANTITIES = ["loss", "error"];
  const state = { setting: null, index: 0 };

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  // report.md's inline markup (**bold**, `code`) as DOM nodes: text is never parsed as HTML.
  function inline(text, parent) {
    for (const part of text.split(/(\*\*[^*]+\*\*|`[^`]+`)/)) {
      if (part.startsWith("**") && part.endsWith("**") && part.length > 4) {
        parent.appendChild(document.createElement("b")).textContent = part.slice(2, -2);
      } else if (part.startsWith("`") && part.endsWith("`") && part.length > 2) {
        parent.appendChild(document.createElement("code")).textContent = part.slice(1, -1);
      } else if (part) {
        parent.appendChild(document.createTextNode(part));
      }
    }
    return parent;
  }

  function fmt(v, digits) {
    return v === null || v === undefined ? "n/a" : v.toFixed(digits === undefined ? 4 : digits);
  }

  function tick(v) {
    return v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(1) : String(Number(v.toPrecision(3)));
  }

  function extent(values) {
    const finite = values.filter((v) => v !== null && isFinite(v));
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (!finite.length) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12) { lo -= 0.5 * (Math.abs(lo) || 1) * 0.01 + 1e-3; hi += 1e-3; }
    const pad = 0.04 * (hi - lo);
    return [lo - pad, hi + pad];
  }

  // An empty chart with axes: returns the scales and the plot group.
  function axes(svg, xRange, yRange, xTicks, xLabel, yLabel) {
    svg.replaceChildren();
    svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const sx = (v) => M.left + (v - xRange[0]) / (xRange[1] - xRange[0]) * (W - M.left - M.right);
    const sy = (v) => H - M.bottom - (v - yRange[0]) / (yRange[1] - yRange[0]) * (H - M.top - M.bottom);
    const g = el("g", { class: "axis" }, svg);
    for (let i = 0; i <= 4; i++) {
      const v = yRange[0] + (i / 4) * (yRange[1] - yRange[0]);
      el("line", { class: "grid", x1: M.left, x2: W - M.right, y1: sy(v), y2: sy(v) }, g);
      el("text", { x: M.left - 4, y: sy(v) + 4, "text-anchor": "end" }, g, tick(v));
    }
    for (const [v, label] of xTicks) {
      el("line", { x1: sx(v), x2: sx(v), y1: H - M.bottom, y2: H - M.bottom + 4 }, g);
      el("text", { x: sx(v), y: H - M.bottom + 16, "text-anchor": "middle" }, g, label);
    }
    el("line", { x1: M.left, x2: W - M.right, y1: H - M.bottom, y2: H - M.bottom }, g);
    el("line", { x1: M.left, x2: M.left, y1: M.top, y2: H - M.bottom }, g);
    el("text", { x: (M.left + W - M.right) / 2, y: H - 6, "text-anchor": "middle" }, g, xLabel);
    el("text", { x: 11, y: (M.top + H - M.bottom) / 2, "text-anchor": "middle",
      transform: `rotate(-90 11 ${(M.top + H - M.bottom) / 2})` }, g, yLabel);
    return { sx, sy, plot: el("g", {}, svg) };
  }

  function polyline(xs, ys, sx, sy) {
    return xs.map((x, i) => (ys[i] === null ? null : `${sx(x)},${sy(ys[i])}`)).filter(Boolean).join(" ");
  }

  // Loss or error against x at the selected t, mean ± std; its own y axis, or one shared by
  // every t with every t's mean drawn faint behind it.
  function drawCurves(q) {
    const s = state.setting, c = s.curves[state.index];
    const same = document.getElementById("same-axis").checked;
    const all = (same ? s.curves : [c]).flatMap((d) => d[q].map((m, i) => [m, d[`${q}_std`][i]]))
      .flatMap(([m, sd]) => (m === null ? [] : [m - (sd || 0), m + (sd || 0)]));
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((v) => [v, String(v)]);
    const { sx, sy, plot } = axes(document.getElementById(`chart-${q}`), [0, 1], extent(all), ticks,
      "x (0: θ_t, 1: θ_final)", `${s.key.split("-")[0]} ${q}`);
    if (same) for (const d of s.curves) el("polyline", { class: "other", points: polyline(d.x, d[q], sx, sy) }, plot);
    const std = c[`${q}_std`];
    if (std.some((v) => v !== null)) {
      const upper = c.x.map((x, i) => `${sx(x)},${sy(c[q][i] + (std[i] || 0))}`);
      const lower = c.x.map((x, i) => `${sx(x)},${sy(c[q][i] - (std[i] || 0))}`).reverse();
      el("polygon", { class: `band ${q}`, points: upper.concat(lower).join(" ") }, plot);
    }
    el("polyline", { class: `line ${q}`, points: polyline(c.x, c[q], sx, sy) }, plot);
    const cursor = el("line", { class: "cursor", y1: M.top, y2: H - M.bottom, visibility: "hidden" }, plot);
    const dot = el("circle", { r: 4, class: q, visibility: "hidden" }, plot);
    const svg = plot.ownerSVGElement;
    svg.onmousemove = (event) => hover(event, svg, sx, sy, q, cursor, dot);
    svg.onmouseleave = () => { cursor.setAttribute("visibility", "hidden"); dot.setAttribute("visibility", "hidden"); };
  }

  // The readout: the nearest evaluated x to the pointer, both quantities' mean ± std there.
  function hover(event, svg, sx, sy, q, cursor, dot) {
    const c = state.setting.curves[state.index];
    const box = svg.getBoundingClientRect();
    const px = (event.clientX - box.left) * (W / box.width);
    let best = 0;
    c.x.forEach((x, i) => { if (Math.abs(sx(x) - px) < Math.abs(sx(c.x[best]) - px)) best = i; });
    cursor.setAttribute("x1", sx(c.x[best])); cursor.setAttribute("x2", sx(c.x[best]));
    cursor.setAttribute("visibility", "visible");
    if (c[q][best] !== null) {
      dot.setAttribute("cx", sx(c.x[best])); dot.setAttribute("cy", sy(c[q][best]));
      dot.setAttribute("visibility", "visible");
    }
    const parts = QUANTITIES.map((k) => {
      const sd = c[`${k}_std`][best];
      return `${k} ${fmt(c[k][best])}` + (sd === null ? "" : ` ± ${fmt(sd)}`);
    });
    document.getElementById("readout").textContent =
      `t = ${state.setting.steps[state.index]}${shortfall(state.setting, state.index)}, x = ${fmt(c.x[best])}: ${parts.join(", ")}`;
  }

  // " (1 of 2 replicates)" where fewer than the setting's replicates are averaged at the i-th t.
  function shortfall(s, i) {
    const n = s.counts ? s.counts[i] : s.replicates;
    return n < s.replicates ? ` (${n} of ${s.replicates} replicates)` : "";
  }

  // t is drawn on log2(1 + t), so that 0, 1, 2, 4, ... and the thousands are all readable.
  const tpos = (t) => Math.log2(1 + t);

  function drawFigure3(q) {
    const s = state.setting, f = s.figure3[q];
    const ys = f.mean.concat(f.ci_low, f.ci_high);
    const last = s.steps[s.steps.length - 1];
    const ticks = [0, 1, 16, 256, 4096, 65536].filter((t) => t <= last).map((t) => [tpos(t), String(t)]);
    const { sx, sy, plot } = axes(document.getElementById(`figure3-${q}`), [0, tpos(last) || 1], extent(ys),
      ticks, "t (log scale)", `${q}: ${s.metric}`);
    const at = tpos(s.steps[state.index]);
    el("line", { class: "selected-t", x1: sx(at), x2: sx(at), y1: M.top, y2: H - M.bottom }, plot);
    s.steps.forEach((t, i) => {
      if (f.ci_low[i] !== null && f.ci_high[i] !== null) {
        el("line", { class: q, x1: sx(tpos(t)), x2: sx(tpos(t)), y1: sy(f.ci_low[i]), y2: sy(f.ci_high[i]) }, plot);
      }
    });
    el("polyline", { class: `line ${q}`, points: polyline(s.steps.map(tpos), f.mean, sx, sy) }, plot);
    s.steps.forEach((t, i) => {
      if (f.mean[i] === null) return;
      const dot = el("circle", { class: q, cx: sx(tpos(t)), cy: sy(f.mean[i]), r: 3.5 }, plot);
      el("title", {}, dot, `t = ${t}${shortfall(s, i)}: ${fmt(f.mean[i])} [${fmt(f.ci_low[i])}, ${fmt(f.ci_high[i])}]`);
      dot.style.cursor = "pointer";
      dot.onclick = () => selectStep(i);
    });
  }

  // The selected t's Figure-3 metric per quantity: mean ± std [95 % interval], from summary.csv.
  function drawMetrics() {
    const s = state.setting, i = state.index;
    const table = document.getElementById("t-metrics");
    table.replaceChildren();
    const head = table.insertRow();
    for (const h of ["quantity", `${s.metric} mean`, "std", "95 % interval low", "high"]) {
      head.appendChild(document.createElement("th")).textContent = h;
    }
    for (const q of QUANTITIES) {
      const row = table.insertRow();
      row.insertCell().textContent = q;
      for (const stat of ["mean", "std", "ci_low", "ci_high"]) {
        const cell = row.insertCell();
        cell.dataset.q = q; cell.dataset.stat = stat;
        cell.textContent = fmt(s.figure3[q][stat][i]);
      }
    }
  }

  function selectStep(i) {
    state.index = i;
    document.getElementById("slider").value = i;
    document.getElementById("t-value").textContent = state.setting.steps[i] + shortfall(state.setting, i);
    document.getElementById("readout").textContent = "hover over a curve for its values";
    QUANTITIES.forEach(drawCurves);
    QUANTITIES.forEach(drawFigure3);
    drawMetrics();
  }

  function selectSetting(key) {
    const s = DATA.settings.find((d) => d.key === key);
    state.setting = s;
    const description = document.getElementById("description");
    description.replaceChildren();
    inline(`${s.description}.`, description);
    const verdicts = document.getElementById("verdicts");
    verdicts.replaceChildren();
    for (const line of s.verdicts) inline(line.replace(/^- /, ""), verdicts.appendChild(document.createElement("li")));
    document.getElementById("metric-name").textContent = s.metric;
    const slider = document.getElementById("slider");
    slider.max = s.steps.length - 1;
    selectStep(0);
  }

  function init() {
    inline(DATA.subtitle, document.getElementById("subtitle"));
    const notes = document.getElementById("notes");
    for (const n of DATA.notes) inline(`Note: ${n}`, notes.appendChild(document.createElement("li"))).className = "note";
    const menu = document.getElementById("setting");
    for (const s of DATA.settings) {
      const option = menu.appendChild(document.createElement("option"));
      option.value = s.key;
      option.textContent = s.key + (s.paper ? " (the paper's setting)" : "");
    }
    menu.onchange = () => selectSetting(menu.value);
    document.getElementById("slider").oninput = (e) => selectStep(Number(e.target.value));
    document.getElementById("same-axis").onchange = () => selectStep(state.index);
    if (DATA.settings.length) selectSetting(DATA.settings[0].key);
  }

  init();
})();
