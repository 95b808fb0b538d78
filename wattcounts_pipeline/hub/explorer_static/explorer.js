/* Watt Counts explorer: renders the release rows embedded in #explorer-data (hub/explorer.py inlines this file).
 * Every value shown comes from that JSON. Text from the data is untrusted (contributed rows): it is only ever
 * set with textContent or setAttribute, never parsed as HTML. No network requests. */
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  var ROWS = DATA.rows;
  var META = DATA.meta;
  var SVG_NS = "http://www.w3.org/2000/svg";
  // Okabe-Ito palette (colour-blind safe), one shape per quality source as a second cue.
  var SOURCES = {
    measured: { colour: "#0072B2", shape: "circle", detail: "lm-eval here, real weights only" },
    published: { colour: "#009E73", shape: "square", detail: "for these weights at bf16" },
    derived: { colour: "#E69F00", shape: "triangle", detail: "published bf16 \u00d7 the format's published retention" },
    none: { colour: "#999999", shape: "diamond", detail: "no quality known" }
  };
  var FILTERS = [
    { id: "filter-hardware", key: "hardware_id", label: "Hardware" },
    { id: "filter-framework", key: "framework", label: "Framework" },
    { id: "filter-quantization", key: "quantization", label: "Quantization" },
    { id: "filter-scenario", key: "workload", label: "Scenario (workload)" },
    { id: "filter-weights", key: "weights", label: "Weights" }
  ];
  var SORTS = {
    energy_per_token_j: { label: "J/token", ascending: true },
    tokens_per_s: { label: "tok/s", ascending: false },
    cost_per_1m_tokens_usd: { label: "USD / 1M tok", ascending: true },
    quality_acc_mean: { label: "Quality", ascending: false }
  };
  var COLUMNS = [  // [header, sort key, tooltip]
    ["Model"], ["Quant."], ["Framework"], ["Hardware"], ["Scenario"], ["Batch"],
    ["J/token", "energy_per_token_j", "gross energy per output token; 95% CI of the mean below"],
    ["tok/s", "tokens_per_s", "output tokens per second"], ["TTFT p50 (s)"], ["TPOT p50 (s)"],
    ["USD / 1M tok", "cost_per_1m_tokens_usd", "electricity cost of 1M output tokens at the release's price"],
    ["Quality", "quality_acc_mean", "mean accuracy; its source below"], ["Provenance"]
  ];
  var state = { filters: {}, sortKey: "energy_per_token_j", ascending: true, open: {} };

  // ---- small helpers -------------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmt(v, digits) {
    if (!isNum(v)) { return "\u2014"; }
    if (Math.abs(v) >= 1000) { return String(Math.round(v)); }
    return String(parseFloat(v.toPrecision(digits || 4)));
  }
  function text(v) { return v === null || v === undefined || v === "" ? "\u2014" : String(v); }
  function uniqueSorted(key) {
    var seen = {};
    ROWS.forEach(function (r) { if (r[key] !== null && r[key] !== undefined) { seen[r[key]] = true; } });
    return Object.keys(seen).sort();
  }
  function sourceOf(r) { return r.quality_source && SOURCES[r.quality_source] ? r.quality_source : "none"; }
  function rowLabel(r) {
    return [r.model, r.quantization, r.framework, "batch " + r.batch_size, r.hardware_id, r.workload]
      .map(text).join(" \u00b7 ");
  }
  function compareRows(key, ascending) {
    return function (a, b) {
      var x = a[key], y = b[key];
      var xn = !isNum(x), yn = !isNum(y);
      if (xn || yn) { return xn === yn ? tie(a, b) : (xn ? 1 : -1); } // unknown values last, both ways
      if (x === y) { return tie(a, b); }
      return (x < y ? -1 : 1) * (ascending ? 1 : -1);
    };
  }
  function tie(a, b) {
    if (a.energy_per_token_j !== b.energy_per_token_j) { return a.energy_per_token_j < b.energy_per_token_j ? -1 : 1; }
    return a.configuration_id < b.configuration_id ? -1 : (a.configuration_id > b.configuration_id ? 1 : 0);
  }
  function filteredRows() {
    return ROWS.filter(function (r) {
      return FILTERS.every(function (f) {
        var want = state.filters[f.key];
        return !want || want === "all" || String(r[f.key]) === want;
      });
    });
  }

  // ---- header ---------------------------------------------------------------------------------------------
  function renderHeader(app) {
    var header = el("header");
    header.appendChild(el("h1", null, "Watt Counts explorer"));
    var n = META.configurations;
    var hardware = uniqueSorted("hardware_id").length;
    var random = META.by_weights.random || 0;
    var summary = el("p", { id: "release-summary" });
    summary.textContent = "Release " + DATA.version + ": " + n + " configurations on " + hardware +
      " hardware setup" + (hardware === 1 ? "" : "s") + ", " + uniqueSorted("framework").length + " framework(s), " +
      uniqueSorted("model").length + " model(s).";
    header.appendChild(summary);
    var note = el("p", { id: "random-weights-note", "class": "note" });
    note.textContent = random + " of " + n + " configurations ran random weights of a real architecture: their " +
      "speed and energy are measured, but they carry no measured quality. Where such a row shows a quality, it is " +
      "published for the real weights or derived from published numbers, and labelled so.";
    header.appendChild(note);
    var sources = Object.keys(META.by_quality_source).sort().map(function (k) {
      return k + " " + META.by_quality_source[k];
    }).join(", ");
    header.appendChild(el("p", { "class": "note" }, "Quality source per configuration: " + sources + "."));
    var nav = el("nav");
    [["#leaderboard-section", "Leaderboard"], ["#fronts-section", "Fronts"], ["#recommend-section", "Recommend"]]
      .forEach(function (link) { nav.appendChild(el("a", { href: link[0] }, link[1])); });
    header.appendChild(nav);
    app.appendChild(header);
  }

  // ---- leaderboard ----------------------------------------------------------------------------------------
  function renderLeaderboard(app) {
    var section = el("section", { id: "leaderboard-section" });
    section.appendChild(el("h2", null, "Leaderboard"));
    var bar = el("div", { "class": "filters" });
    FILTERS.forEach(function (f) {
      var label = el("label", { "for": f.id }, f.label);
      var select = el("select", { id: f.id, "data-key": f.key });
      select.appendChild(el("option", { value: "all" }, "all"));
      uniqueSorted(f.key).forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
      select.addEventListener("change", function () { state.filters[f.key] = select.value; update(); });
      var box = el("div");
      box.appendChild(label);
      box.appendChild(select);
      bar.appendChild(box);
    });
    var reset = el("button", { type: "button", id: "filter-reset" }, "Clear filters");
    reset.addEventListener("click", function () {
      FILTERS.forEach(function (f) { document.getElementById(f.id).value = "all"; state.filters[f.key] = "all"; });
      update();
    });
    bar.appendChild(reset);
    section.appendChild(bar);
    section.appendChild(el("p", { id: "row-count", "aria-live": "polite" }));

    var wrap = el("div", { "class": "table-wrap" });
    var table = el("table", { id: "leaderboard" });
    var head = el("tr");
    COLUMNS.forEach(function (c) {
      var th = el("th", { scope: "col" });
      if (c[1]) {
        var button = el("button", { type: "button", id: "sort-" + c[1], "data-sort": c[1], title: c[2] }, c[0]);
        button.addEventListener("click", function () {
          state.ascending = state.sortKey === c[1] ? !state.ascending : SORTS[c[1]].ascending;
          state.sortKey = c[1];
          update();
        });
        th.appendChild(button);
      } else {
        th.textContent = c[0];
      }
      head.appendChild(th);
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    table.appendChild(el("tbody"));
    wrap.appendChild(table);
    section.appendChild(wrap);
    app.appendChild(section);
  }

  /* The provenance cell: a toggle that opens a full-width row under the configuration with where its numbers
   * came from (weights, quality source, energy method, repetitions, windows). */
  function provenanceCell(r) {
    var td = el("td", { "class": "col-provenance" });
    var quality = r.quality_source ? r.quality_source + " quality" : "no quality";
    var open = !!state.open[r.configuration_id];
    var button = el("button", { type: "button", "class": "prov-toggle", "aria-expanded": String(open) },
      text(r.weights) + " weights \u00b7 " + quality);
    button.addEventListener("click", function () {
      var tr = td.parentNode;
      var next = tr.nextSibling;
      if (state.open[r.configuration_id]) {
        delete state.open[r.configuration_id];
        if (next && next.classList.contains("provenance-row")) { next.parentNode.removeChild(next); }
        button.setAttribute("aria-expanded", "false");
      } else {
        state.open[r.configuration_id] = true;
        tr.parentNode.insertBefore(provenanceRow(r), next);
        button.setAttribute("aria-expanded", "true");
      }
    });
    td.appendChild(button);
    return td;
  }

  function provenanceRow(r) {
    var tr = el("tr", { "class": "provenance-row", "data-for": r.configuration_id });
    var td = el("td", { colspan: String(COLUMNS.length) });
    var dl = el("dl");
    function item(term, value) { dl.appendChild(el("dt", null, term)); dl.appendChild(el("dd", null, value)); }
    item("Configuration", text(r.configuration_id));
    item("Weights", r.weights === "random" ? "random (real architecture): speed and energy only, no measured quality"
      : text(r.weights));
    item("Quality source", r.quality_source ? r.quality_source + " (" + SOURCES[sourceOf(r)].detail + ")" : "none");
    item("Quality tasks", text(r.quality_tasks));
    item("Quality 95% interval", isNum(r.quality_acc_ci95_low) ? fmt(r.quality_acc_ci95_low, 3) + " \u2013 " +
      fmt(r.quality_acc_ci95_high, 3) : "\u2014");
    item("Energy method", text(r.energy_method));
    item("Repetitions", text(r.n_runs));
    item("J/token 95% CI", isNum(r.energy_per_token_j_ci95_low) ? fmt(r.energy_per_token_j_ci95_low) + " \u2013 " +
      fmt(r.energy_per_token_j_ci95_high) : "\u2014");
    item("Window length (s)", isNum(r.window_s_median) ? "median " + fmt(r.window_s_median, 3) + " (" +
      fmt(r.window_s_min, 3) + " \u2013 " + fmt(r.window_s_max, 3) + ")" : "\u2014");
    item("Repeat interval (s)", isNum(r.repeat_interval_s) ? fmt(r.repeat_interval_s, 3) +
      " between repetition starts (median; start times are kept to the second)" : "\u2014");
    item("Energy flags", r.energy_flags ? r.energy_flags : "none");
    item("Mean power (W)", fmt(r.mean_power_w));
    item("GPUs", text(r.gpu_count) + (r.gpu_name ? " \u00d7 " + r.gpu_name : "") +
      (r.parallelism && r.parallelism !== "none" ? ", " + r.parallelism + " parallel" : ""));
    item("Tokens in / out", fmt(r.input_tokens) + " / " + fmt(r.output_tokens));
    item("dtype", text(r.dtype));
    item("Row source", text(r.source));
    item("Engine arguments", text(r.engine_args_json));
    td.appendChild(dl);
    tr.appendChild(td);
    return tr;
  }

  /* The engine arguments that tell apart otherwise equal rows (compile mode, server slots), shortly: top-level
   * scalars with short values only; the full JSON is in the provenance. */
  function engineSummary(json) {
    var args;
    try { args = JSON.parse(json || "{}"); } catch (e) { return ""; }
    if (!args || typeof args !== "object" || Array.isArray(args)) { return ""; }
    return Object.keys(args).filter(function (k) {
      var v = args[k];
      return (typeof v === "number" || typeof v === "boolean" || (typeof v === "string" && v.length <= 16)) &&
        k !== "device" && k !== "dtype";
    }).slice(0, 4).map(function (k) { return k + "=" + String(args[k]); }).join(" ");
  }

  function renderRows(rows) {
    var tbody = document.querySelector("#leaderboard tbody");
    var fresh = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr", { "data-configuration-id": r.configuration_id, "data-quality-source": sourceOf(r) });
      tr.appendChild(el("td", { "class": "col-model" }, text(r.model)));
      tr.appendChild(el("td", { "class": "col-quantization" }, text(r.quantization)));
      var framework = el("td", { "class": "col-framework" });
      framework.appendChild(el("span", null, text(r.framework)));
      var engine = engineSummary(r.engine_args_json);
      if (engine) { framework.appendChild(el("small", { title: text(r.engine_args_json) }, engine)); }
      tr.appendChild(framework);
      tr.appendChild(el("td", { "class": "col-hardware" }, text(r.hardware_id)));
      tr.appendChild(el("td", { "class": "col-scenario" }, text(r.workload)));
      tr.appendChild(el("td", { "class": "num col-batch" }, text(r.batch_size)));
      var energy = el("td", { "class": "num col-energy", "data-value": String(r.energy_per_token_j) });
      energy.appendChild(el("span", null, fmt(r.energy_per_token_j)));
      if (isNum(r.energy_per_token_j_ci95_low)) {
        energy.appendChild(el("small", null, fmt(r.energy_per_token_j_ci95_low, 3) + "\u2013" +
          fmt(r.energy_per_token_j_ci95_high, 3)));
      }
      tr.appendChild(energy);
      tr.appendChild(el("td", { "class": "num col-speed", "data-value": String(r.tokens_per_s) }, fmt(r.tokens_per_s)));
      tr.appendChild(el("td", { "class": "num col-ttft" }, fmt(r.ttft_p50_s, 3)));
      tr.appendChild(el("td", { "class": "num col-tpot" }, fmt(r.tpot_p50_s, 3)));
      tr.appendChild(el("td", { "class": "num col-cost", "data-value": String(r.cost_per_1m_tokens_usd) },
        fmt(r.cost_per_1m_tokens_usd, 3)));
      var quality = el("td", { "class": "num col-quality", "data-value": String(r.quality_acc_mean) });
      quality.appendChild(el("span", null, fmt(r.quality_acc_mean, 3)));
      if (isNum(r.quality_acc_mean)) {
        quality.appendChild(el("small", { "class": "badge src-" + sourceOf(r) }, r.quality_source || "source unknown"));
      }
      tr.appendChild(quality);
      tr.appendChild(provenanceCell(r));
      fresh.appendChild(tr);
      if (state.open[r.configuration_id]) { fresh.appendChild(provenanceRow(r)); }
    });
    tbody.parentNode.replaceChild(fresh, tbody);
  }

  // ---- fronts (inline SVG) --------------------------------------------------------------------------------
  function niceTicks(lo, hi, log) {
    var ticks = [];
    if (log) {
      var k0 = Math.floor(Math.log10(lo)), k1 = Math.ceil(Math.log10(hi));
      var steps = k1 - k0 > 4 ? [1] : (k1 - k0 > 1 ? [1, 2, 5] : [1, 2, 3, 5, 7]);
      for (var k = k0; k <= k1; k++) {
        steps.forEach(function (m) {
          var v = m * Math.pow(10, k);
          if (v >= lo * 0.999 && v <= hi * 1.001) { ticks.push(v); }
        });
      }
      return ticks;
    }
    var span = hi - lo || Math.abs(hi) || 1;
    var raw = span / 5, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 5, 10].map(function (m) { return m * mag; }).filter(function (s) { return s >= raw; })[0];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) { ticks.push(parseFloat(t.toPrecision(12))); }
    return ticks;
  }
  function tickLabel(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) { return v.toExponential(0); }
    return String(parseFloat(v.toPrecision(3)));
  }
  function domain(values, log) {
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (log) {
      if (lo === hi) { return [lo / 2, hi * 2]; }
      var pad = Math.pow(hi / lo, 0.05);
      return [lo / pad, hi * pad];
    }
    if (lo === hi) { return [lo - 0.05, hi + 0.05]; }
    var p = (hi - lo) * 0.06;
    return [lo - p, hi + p];
  }
  /* Points on the front: none better in both objectives. `maximizeY` false means both are minimised. */
  function pareto(points, maximizeY) {
    var sorted = points.slice().sort(function (a, b) {
      return a.x - b.x || (maximizeY ? b.y - a.y : a.y - b.y);
    });
    var front = [], best = maximizeY ? -Infinity : Infinity;
    sorted.forEach(function (p) {
      if (maximizeY ? p.y > best : p.y < best) { front.push(p); best = p.y; }
    });
    return front;
  }
  function marker(shape, cx, cy, r, attrs) {
    var node;
    if (shape === "circle") {
      node = svgEl("circle", { cx: cx, cy: cy, r: r });
    } else if (shape === "square") {
      node = svgEl("rect", { x: cx - r * 0.9, y: cy - r * 0.9, width: r * 1.8, height: r * 1.8 });
    } else if (shape === "triangle") {
      node = svgEl("path", { d: "M" + cx + "," + (cy - r * 1.2) + "L" + (cx + r * 1.1) + "," + (cy + r * 0.8) +
        "L" + (cx - r * 1.1) + "," + (cy + r * 0.8) + "Z" });
    } else {
      node = svgEl("path", { d: "M" + cx + "," + (cy - r * 1.2) + "L" + (cx + r * 1.2) + "," + cy + "L" + cx + "," +
        (cy + r * 1.2) + "L" + (cx - r * 1.2) + "," + cy + "Z" });
    }
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, String(attrs[k])); });
    return node;
  }

  function scatter(svg, points, opts) {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var W = 640, H = 420, m = { left: 70, right: 20, top: 16, bottom: 56 };
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("data-points", String(points.length));
    var title = svgEl("title");
    title.textContent = opts.title;
    svg.appendChild(title);
    if (!points.length) {
      var empty = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", "class": "empty" });
      empty.textContent = opts.empty;
      svg.appendChild(empty);
      svg.setAttribute("data-front", "0");
      return;
    }
    var xd = domain(points.map(function (p) { return p.x; }), opts.xLog);
    var yd = domain(points.map(function (p) { return p.y; }), opts.yLog);
    function scale(d, log, a, b) {
      return function (v) {
        var t = log ? (Math.log(v) - Math.log(d[0])) / (Math.log(d[1]) - Math.log(d[0])) : (v - d[0]) / (d[1] - d[0]);
        return a + t * (b - a);
      };
    }
    var sx = scale(xd, opts.xLog, m.left, W - m.right), sy = scale(yd, opts.yLog, H - m.bottom, m.top);
    var axes = svgEl("g", { "class": "axes" });
    niceTicks(xd[0], xd[1], opts.xLog).forEach(function (t) {
      var x = sx(t);
      axes.appendChild(svgEl("line", { x1: x, x2: x, y1: m.top, y2: H - m.bottom, "class": "grid" }));
      var label = svgEl("text", { x: x, y: H - m.bottom + 18, "text-anchor": "middle" });
      label.textContent = tickLabel(t);
      axes.appendChild(label);
    });
    niceTicks(yd[0], yd[1], opts.yLog).forEach(function (t) {
      var y = sy(t);
      axes.appendChild(svgEl("line", { x1: m.left, x2: W - m.right, y1: y, y2: y, "class": "grid" }));
      var label = svgEl("text", { x: m.left - 8, y: y + 4, "text-anchor": "end" });
      label.textContent = tickLabel(t);
      axes.appendChild(label);
    });
    axes.appendChild(svgEl("rect", { x: m.left, y: m.top, width: W - m.left - m.right, height: H - m.top - m.bottom,
      "class": "frame" }));
    var xl = svgEl("text", { x: (m.left + W - m.right) / 2, y: H - 12, "text-anchor": "middle", "class": "axis-label" });
    xl.textContent = opts.xLabel;
    axes.appendChild(xl);
    var yl = svgEl("text", { x: -(m.top + H - m.bottom) / 2, y: 18, "text-anchor": "middle", "class": "axis-label",
      transform: "rotate(-90)" });
    yl.textContent = opts.yLabel;
    axes.appendChild(yl);
    svg.appendChild(axes);

    var front = pareto(points, opts.maximizeY);
    var onFront = {};
    front.forEach(function (p) { onFront[p.row.configuration_id] = true; });
    svg.setAttribute("data-front", String(front.length));
    var bars = svgEl("g", { "class": "ci" });
    points.forEach(function (p) {
      if (isNum(p.xLo) && isNum(p.xHi) && p.xLo > 0) {
        bars.appendChild(svgEl("line", { x1: sx(p.xLo), x2: sx(p.xHi), y1: sy(p.y), y2: sy(p.y) }));
      }
      if (isNum(p.yLo) && isNum(p.yHi) && (!opts.yLog || p.yLo > 0)) {
        bars.appendChild(svgEl("line", { x1: sx(p.x), x2: sx(p.x), y1: sy(p.yLo), y2: sy(p.yHi) }));
      }
    });
    svg.appendChild(bars);
    var path = front.map(function (p, i) {
      if (i === 0) { return "M" + sx(p.x) + "," + sy(p.y); }
      return "H" + sx(p.x) + "V" + sy(p.y);  // a step: the front holds between its points
    }).join("");
    svg.appendChild(svgEl("path", { d: path, "class": "front-line" }));
    var dots = svgEl("g", { "class": "points" });
    var ordered = points.filter(function (p) { return !onFront[p.row.configuration_id]; })
      .concat(front);  // front points drawn last, on top
    ordered.forEach(function (p) {
      var src = sourceOf(p.row), isFront = !!onFront[p.row.configuration_id];
      var node = marker(SOURCES[src].shape, sx(p.x), sy(p.y), isFront ? 6 : 4, {
        fill: SOURCES[src].colour, "class": isFront ? "pt pareto" : "pt",
        "data-configuration-id": p.row.configuration_id
      });
      var tip = svgEl("title");
      tip.textContent = rowLabel(p.row) + "\n" + opts.xLabel + ": " + fmt(p.x) + "\n" + opts.yLabel + ": " +
        fmt(p.y) + "\nquality source: " + (p.row.quality_source || "none") + (isFront ? "\non the front" : "");
      node.appendChild(tip);
      dots.appendChild(node);
    });
    svg.appendChild(dots);
  }

  function legend(container, sources) {
    var list = el("ul", { "class": "legend" });
    sources.forEach(function (k) {
      var li = el("li");
      var sw = document.createElementNS(SVG_NS, "svg");
      sw.setAttribute("viewBox", "0 0 16 16");
      sw.setAttribute("width", "16");
      sw.setAttribute("height", "16");
      sw.appendChild(marker(SOURCES[k].shape, 8, 8, 5, { fill: SOURCES[k].colour }));
      li.appendChild(sw);
      li.appendChild(el("span", null, k === "none" ? "none: " + SOURCES[k].detail : k + " (" + SOURCES[k].detail + ")"));
      list.appendChild(li);
    });
    var li = el("li");
    var ring = document.createElementNS(SVG_NS, "svg");
    ring.setAttribute("viewBox", "0 0 16 16");
    ring.setAttribute("width", "16");
    ring.setAttribute("height", "16");
    ring.appendChild(svgEl("circle", { cx: 8, cy: 8, r: 6, "class": "pt pareto", fill: "#ffffff" }));
    li.appendChild(ring);
    li.appendChild(el("span", null, "outlined and joined: on the Pareto front"));
    list.appendChild(li);
    container.appendChild(list);
  }

  function taskSets() {
    var counts = {};
    ROWS.forEach(function (r) {
      if (isNum(r.quality_acc_mean) && r.quality_tasks) { counts[r.quality_tasks] = (counts[r.quality_tasks] || 0) + 1; }
    });
    return Object.keys(counts).sort(function (a, b) { return counts[b] - counts[a] || (a < b ? -1 : 1); });
  }

  function renderFronts(app) {
    var section = el("section", { id: "fronts-section" });
    section.appendChild(el("h2", null, "Fronts"));
    section.appendChild(el("p", { "class": "note" }, "Both plots show the rows the leaderboard's filters keep. " +
      "Axes are logarithmic where marked (log); bars are 95% intervals. Hover a point for its configuration."));
    var grid = el("div", { "class": "fronts" });

    var q = el("figure", { id: "quality-front" });
    var controls = el("div", { "class": "filters" });
    var box = el("div");
    box.appendChild(el("label", { "for": "front-tasks" }, "Quality tasks"));
    var tasks = el("select", { id: "front-tasks" });
    taskSets().forEach(function (t) { tasks.appendChild(el("option", { value: t }, t)); });
    tasks.addEventListener("change", update);
    box.appendChild(tasks);
    controls.appendChild(box);
    q.appendChild(controls);
    q.appendChild(svgEl("svg", { id: "front-quality", role: "img", "class": "plot" }));
    var qcap = el("figcaption");
    qcap.textContent = "Quality against energy per token. Only rows with a known quality on the chosen tasks " +
      "(accuracies over different tasks do not compare). Front: no other row has both lower J/token and higher " +
      "quality. Random-weight rows have no measured quality: their points are published or derived values.";
    q.appendChild(qcap);
    legend(q, ["measured", "published", "derived"]);
    grid.appendChild(q);

    var c = el("figure", { id: "cost-front" });
    c.appendChild(svgEl("svg", { id: "front-cost", role: "img", "class": "plot" }));
    var ccap = el("figcaption");
    var price = META.cost_proportional_to_energy && isNum(META.usd_per_kwh) ?
      "In this release cost is electricity at one price (" + fmt(META.usd_per_kwh, 3) + " USD/kWh), so cost " +
      "against J/token would be a straight line; the trade-off it hides is speed per request. " :
      "Cost is the release's electricity cost per 1M output tokens. ";
    ccap.textContent = price + "Cost per 1M output tokens against time per output token (median TPOT): bigger " +
      "batches make tokens cheaper and each request slower. Front: no other row is both cheaper and faster. " +
      "Colour: quality source.";
    c.appendChild(ccap);
    legend(c, ["measured", "published", "derived", "none"]);
    grid.appendChild(c);
    section.appendChild(grid);
    app.appendChild(section);
  }

  function updateFronts(rows) {
    var tasks = document.getElementById("front-tasks").value;
    var qpoints = rows.filter(function (r) {
      return isNum(r.quality_acc_mean) && r.quality_tasks === tasks && r.energy_per_token_j > 0;
    }).map(function (r) {
      return { x: r.energy_per_token_j, y: r.quality_acc_mean, row: r, xLo: r.energy_per_token_j_ci95_low,
        xHi: r.energy_per_token_j_ci95_high, yLo: r.quality_acc_ci95_low, yHi: r.quality_acc_ci95_high };
    });
    scatter(document.getElementById("front-quality"), qpoints, {
      title: "Quality vs energy per token", xLabel: "energy per output token (J, log)",
      yLabel: "mean accuracy (" + (tasks || "no tasks") + ")", xLog: true, yLog: false, maximizeY: true,
      empty: "no row with a known quality under these filters"
    });
    var cpoints = rows.filter(function (r) {
      return isNum(r.cost_per_1m_tokens_usd) && r.cost_per_1m_tokens_usd > 0 && isNum(r.tpot_p50_s) && r.tpot_p50_s > 0;
    }).map(function (r) { return { x: r.tpot_p50_s, y: r.cost_per_1m_tokens_usd, row: r }; });
    scatter(document.getElementById("front-cost"), cpoints, {
      title: "Cost vs time per output token", xLabel: "time per output token, median (s, log)",
      yLabel: "electricity cost (USD per 1M output tokens, log)", xLog: true, yLog: true, maximizeY: false,
      empty: "no row with a cost and a TPOT under these filters"
    });
  }

  // ---- recommend ------------------------------------------------------------------------------------------
  function selectBox(parent, id, label, values) {
    var box = el("div");
    box.appendChild(el("label", { "for": id }, label));
    var select = el("select", { id: id });
    values.forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
    box.appendChild(select);
    parent.appendChild(box);
    return select;
  }
  function numberBox(parent, id, label, step) {
    var box = el("div");
    box.appendChild(el("label", { "for": id }, label));
    var input = el("input", { id: id, type: "number", min: "0", step: step, placeholder: "any" });
    box.appendChild(input);
    parent.appendChild(box);
    return input;
  }
  function resultList(out, pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) { dl.appendChild(el("dt", null, p[0])); dl.appendChild(el("dd", null, p[1])); });
    out.appendChild(dl);
  }

  function renderRecommend(app) {
    var section = el("section", { id: "recommend-section" });
    section.appendChild(el("h2", null, "Recommend"));
    var form = el("form", { id: "recommend-form", "class": "filters" });
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    var out = el("div", { id: "rec-result", "aria-live": "polite" });
    var recs = DATA.recommendations;
    if (recs && recs.length) {
      section.setAttribute("data-mode", "precomputed");
      section.appendChild(el("p", { "class": "note" }, "Precomputed answers, one per hardware and scenario, made " +
        "when this page was built; each says where it came from. This page does not predict."));
      var hw = selectBox(form, "rec-hardware", "Hardware", uniq(recs.map(function (r) { return r.hardware; })));
      var sc = selectBox(form, "rec-scenario", "Scenario", uniq(recs.map(function (r) { return r.scenario; })));
      var show = function () { showPrecomputed(out, recs, hw.value, sc.value); };
      hw.addEventListener("change", show);
      sc.addEventListener("change", show);
      section.appendChild(form);
      section.appendChild(out);
      app.appendChild(section);
      show();
      return;
    }
    section.setAttribute("data-mode", "measured");
    section.appendChild(el("p", { "class": "note", id: "rec-label" }, "Measured rows only: no prediction. The " +
      "form picks, among the configurations this release measured on the chosen hardware and workload, the lowest " +
      "J/token row that meets the limits you set (empty: no limit). A row without a quality fails a quality need."));
    var mhw = selectBox(form, "rec-hardware", "Hardware", uniqueSorted("hardware_id"));
    var msc = selectBox(form, "rec-scenario", "Scenario (workload)", uniqueSorted("workload"));
    var tpot = numberBox(form, "rec-max-tpot", "Max TPOT p50 (s)", "0.001");
    var ttft = numberBox(form, "rec-max-ttft", "Max TTFT p50 (s)", "0.01");
    var minq = numberBox(form, "rec-min-quality", "Min quality (0\u20131)", "0.01");
    var run = function () { showMeasured(out, mhw.value, msc.value, tpot.value, ttft.value, minq.value); };
    [mhw, msc, tpot, ttft, minq].forEach(function (n) {
      n.addEventListener("change", run);
      n.addEventListener("input", run);
    });
    section.appendChild(form);
    section.appendChild(out);
    app.appendChild(section);
    run();
  }
  function uniq(values) {
    var seen = {};
    return values.filter(function (v) { if (seen[v]) { return false; } seen[v] = true; return true; });
  }

  function showPrecomputed(out, recs, hardware, scenario) {
    while (out.firstChild) { out.removeChild(out.firstChild); }
    var rec = recs.filter(function (r) { return r.hardware === hardware && r.scenario === scenario; })[0];
    out.removeAttribute("data-configuration-id");
    if (!rec) {
      out.appendChild(el("p", null, "No precomputed answer for " + hardware + " and " + scenario + "."));
      return;
    }
    out.appendChild(el("p", { "class": "source" }, "Source: " + rec.source));
    if (!rec.best) {
      out.appendChild(el("p", null, "No configuration meets this scenario's needs" +
        (rec.unmet ? ": " + rec.unmet : ".")));
    } else {
      if (rec.best.configuration_id) { out.setAttribute("data-configuration-id", String(rec.best.configuration_id)); }
      resultList(out, Object.keys(rec.best).map(function (k) {
        var v = rec.best[k];
        return [k, isNum(v) ? fmt(v) : text(v)];
      }));
    }
    if (rec.warnings.length) {
      var ul = el("ul", { "class": "warnings" });
      rec.warnings.forEach(function (w) { ul.appendChild(el("li", null, w)); });
      out.appendChild(ul);
    }
  }

  function showMeasured(out, hardware, workload, maxTpot, maxTtft, minQuality) {
    while (out.firstChild) { out.removeChild(out.firstChild); }
    out.removeAttribute("data-configuration-id");
    var limit = function (s) { var v = parseFloat(s); return isFinite(v) ? v : null; };
    var tpot = limit(maxTpot), ttft = limit(maxTtft), q = limit(minQuality);
    var pool = ROWS.filter(function (r) { return r.hardware_id === hardware && r.workload === workload; });
    var ok = pool.filter(function (r) {
      return (tpot === null || (isNum(r.tpot_p50_s) && r.tpot_p50_s <= tpot)) &&
        (ttft === null || (isNum(r.ttft_p50_s) && r.ttft_p50_s <= ttft)) &&
        (q === null || (isNum(r.quality_acc_mean) && r.quality_acc_mean >= q));
    }).sort(compareRows("energy_per_token_j", true));
    out.setAttribute("data-matches", String(ok.length));
    out.appendChild(el("p", { "class": "source" }, "Measured rows only: " + ok.length + " of " + pool.length +
      " measured configurations on " + hardware + " running " + workload + " meet these limits."));
    if (!ok.length) {
      out.appendChild(el("p", null, "None meets them; loosen a limit."));
      return;
    }
    var b = ok[0];
    out.setAttribute("data-configuration-id", b.configuration_id);
    resultList(out, [
      ["Lowest measured J/token", fmt(b.energy_per_token_j) + " J/token (95% CI " +
        fmt(b.energy_per_token_j_ci95_low, 3) + "\u2013" + fmt(b.energy_per_token_j_ci95_high, 3) + ")"],
      ["Configuration", rowLabel(b)],
      ["Throughput", fmt(b.tokens_per_s) + " tok/s"],
      ["TTFT / TPOT p50", fmt(b.ttft_p50_s, 3) + " s / " + fmt(b.tpot_p50_s, 3) + " s"],
      ["Electricity cost", fmt(b.cost_per_1m_tokens_usd, 3) + " USD per 1M output tokens"],
      ["Quality", isNum(b.quality_acc_mean) ? fmt(b.quality_acc_mean, 3) + " (" + (b.quality_source || "source unknown") +
        ", " + text(b.quality_tasks) + ")" : "none known"],
      ["Weights", text(b.weights) + (b.weights === "random" ? " (no measured quality)" : "")],
      ["Configuration id", b.configuration_id]
    ]);
  }

  // ---- wiring -----------------------------------------------------------------------------------------------
  function update() {
    var rows = filteredRows().sort(compareRows(state.sortKey, state.ascending));
    renderRows(rows);
    var count = document.getElementById("row-count");
    count.setAttribute("data-count", String(rows.length));
    count.textContent = "Showing " + rows.length + " of " + ROWS.length + " configurations, sorted by " +
      SORTS[state.sortKey].label + (state.ascending ? " (lowest first)" : " (highest first)") + ".";
    Object.keys(SORTS).forEach(function (k) {
      var th = document.getElementById("sort-" + k).parentNode;
      if (k === state.sortKey) { th.setAttribute("aria-sort", state.ascending ? "ascending" : "descending"); }
      else { th.removeAttribute("aria-sort"); }
    });
    updateFronts(rows);
  }

  var app = document.getElementById("app");
  renderHeader(app);
  renderLeaderboard(app);
  renderFronts(app);
  renderRecommend(app);
  var footer = el("footer");
  footer.textContent = "Every number on this page comes from release " + DATA.version + "'s tables " +
    "(configurations.parquet; window lengths and repeat intervals from runs.parquet). The page makes no network " +
    "request.";
  app.appendChild(footer);
  update();
  document.body.setAttribute("data-ready", "true");
}());
