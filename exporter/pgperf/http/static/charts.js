/* pgperf's charts: each <script type="application/json" data-chart> element of a page
 * describes one chart (drawn into the canvas whose id it names) with Chart.js, which this
 * package vendors (chart.umd.min.js). The description is pgperf's own small format:
 *
 *   {id, kind: line|bar|hbar|doughnut, title, x: time|category, xmin, xmax, labels,
 *    series: [{label, data, axis: y|y2, tooltips, color, dash, width, points, fill, legend}],
 *    axes: {y: {title, min, max, format}, y2: {...}}, markers: [epoch ms, ...],
 *    tooltip: "nearest", empty: "text shown instead of an empty chart"}
 *
 * A series may be drawn dashed (dash: true), without its line (width: 0) or its points
 * (points: false), filled down to the series before it (fill: "-1": a forecast's band
 * between its low and high series) and left out of the legend (legend: false). A chart
 * whose series have points at different times (a forecast: history, then projection)
 * shows the nearest point in its tooltip (tooltip: "nearest") rather than one per series.
 *
 * Times are epoch milliseconds and shown in UTC, as everywhere in pgperf. No inline script
 * and no network access: the page's Content-Security-Policy allows neither. */
(function () {
  "use strict";

  var PALETTE = ["#1d64c8", "#e8590c", "#2f9e44", "#ae3ec9", "#c92a2a", "#0c8599", "#5c940d", "#862e9c", "#495057"];
  var charts = {};

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  /* A tick's time: with seconds when ticks are less than a minute apart, with the date
   * when the chart spans days. */
  function timeLabel(ms, step, span) {
    var d = new Date(ms);
    var hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    if (step > 0 && step < 60000) { return hm + ":" + pad(d.getUTCSeconds()); }
    if (span < 2 * 86400000) { return hm; }
    var day = pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
    /* Ticks whole days apart (a forecast's months): the date alone, with the year over a long span. */
    if (step >= 86400000) { return span > 300 * 86400000 ? d.getUTCFullYear() + "-" + day : day; }
    return day + " " + hm;
  }

  function fullTime(ms) {
    var d = new Date(ms);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }

  /* Bytes with as many decimals as the distance between two ticks needs, so that
   * neighbouring ticks never read the same (25.80 GB, 25.81 GB rather than 25.8G 25.8G). */
  var UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];
  function bytes(value, step, top) {
    var scale = Math.max(Math.abs(top || value), 1);
    var k = Math.min(UNITS.length - 1, Math.max(0, Math.floor(Math.log(scale) / Math.log(1024))));
    var unit = Math.pow(1024, k);
    var decimals = 0;
    if (step > 0) { decimals = Math.max(0, Math.min(4, Math.ceil(-Math.log10(step / unit) + 0.0001))); }
    if (k === 0) { decimals = 0; }
    return (value / unit).toFixed(decimals) + " " + UNITS[k];
  }

  /* Ticks of a bytes axis at round numbers of its unit (0.2 GB, not 0.2e9 bytes). */
  function bytesTicks(axis) {
    var min = axis.min, max = axis.max;
    if (!isFinite(min) || !isFinite(max) || max <= min) { return; }
    var top = Math.max(Math.abs(min), Math.abs(max), 1);
    var unit = Math.pow(1024, Math.min(UNITS.length - 1, Math.floor(Math.log(top) / Math.log(1024))));
    var span = (max - min) / unit, raw = span / 6, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var step = [1, 2, 2.5, 5, 10].map(function (m) { return m * power; }).filter(function (v) { return v >= raw; })[0];
    var ticks = [];
    for (var v = Math.ceil(min / unit / step) * step; v * unit <= max + 1e-9 * unit; v += step) {
      ticks.push({value: v * unit});
    }
    if (ticks.length >= 2) { axis.ticks = ticks; }
  }

  /* A round step for a time axis spanning *span* milliseconds: about 6 ticks. */
  var TIME_STEPS = [1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                    172800, 604800, 1209600, 2592000, 5184000, 7776000].map(function (sec) { return sec * 1000; });
  function timeStep(span) {
    var want = span / 6;
    for (var i = 0; i < TIME_STEPS.length; i++) { if (TIME_STEPS[i] >= want) { return TIME_STEPS[i]; } }
    return TIME_STEPS[TIME_STEPS.length - 1];
  }

  function number(value, step) {
    var decimals = 0;
    if (step > 0 && step < 1) { decimals = Math.min(4, Math.ceil(-Math.log10(step) + 0.0001)); }
    return Number(value).toLocaleString("en-US", {minimumFractionDigits: decimals, maximumFractionDigits: decimals});
  }

  function formatter(format) {
    return function (value, index, ticks) {
      var step = ticks && ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : 0;
      var top = ticks && ticks.length ? Math.max.apply(null, ticks.map(function (t) { return Math.abs(t.value); })) : value;
      if (format === "bytes") { return bytes(value, step, top); }
      if (format === "percent") { return number(value, step) + "%"; }
      if (format === "ms") { return top >= 10000 ? number(value / 1000, step / 1000) + " s" : number(value, step) + " ms"; }
      return number(value, step);
    };
  }

  function valueText(value, format) {
    if (value === null || value === undefined) { return "n/a"; }
    if (format === "bytes") { return bytes(value, 0.001 * Math.abs(value), value); }
    var text = Number(value).toLocaleString("en-US", {maximumFractionDigits: 3});
    if (format === "percent") { return text + "%"; }
    if (format === "ms" && Math.abs(value) >= 10000) {
      return (value / 1000).toLocaleString("en-US", {maximumFractionDigits: 2}) + " s";
    }
    if (format === "ms") { return text + " ms"; }
    return text;
  }

  /* Vertical dotted lines at spec.markers (statistics resets, server restarts). */
  var markerPlugin = {
    id: "pgperfMarkers",
    afterDatasetsDraw: function (chart, args, options) {
      var marks = options && options.at;
      if (!marks || !marks.length || !chart.scales.x) { return; }
      var ctx = chart.ctx, area = chart.chartArea;
      ctx.save();
      ctx.strokeStyle = "#b54708";
      ctx.setLineDash([3, 3]);
      marks.forEach(function (t) {
        var x = chart.scales.x.getPixelForValue(t);
        if (x >= area.left && x <= area.right) {
          ctx.beginPath(); ctx.moveTo(x, area.top); ctx.lineTo(x, area.bottom); ctx.stroke();
        }
      });
      ctx.restore();
    }
  };

  function axis(spec, key, position, grid) {
    var a = (spec.axes || {})[key] || {};
    var options = {
      type: "linear", position: position, display: true,
      title: {display: !!a.title, text: a.title || ""},
      ticks: {callback: formatter(a.format), maxTicksLimit: 7},
      grid: {drawOnChartArea: grid}
    };
    if (a.min !== undefined && a.min !== null) { options.min = a.min; }
    if (a.max !== undefined && a.max !== null) { options.max = a.max; }
    if (a.min === 0 && a.max === undefined) { options.beginAtZero = true; }
    if (a.format === "bytes") { options.afterBuildTicks = bytesTicks; }
    return options;
  }

  function config(spec) {
    var kind = spec.kind || "line";
    var formats = {};
    Object.keys(spec.axes || {}).forEach(function (k) { formats[k] = (spec.axes[k] || {}).format; });
    var datasets = (spec.series || []).map(function (s, i) {
      var color = s.color || PALETTE[i % PALETTE.length];
      var d = {
        label: s.label, data: s.data, borderColor: color, backgroundColor: color, borderWidth: 2,
        pointRadius: (s.data || []).length < 40 && s.points !== false ? 2.5 : 0, pointHitRadius: 6, tension: 0,
        spanGaps: false
      };
      if (kind === "line" || s.kind === "line") { d.type = "line"; d.backgroundColor = color + "33"; }
      if (s.dash) { d.borderDash = [6, 4]; }
      if (s.width !== undefined) { d.borderWidth = s.width; }
      d.fill = s.fill || false;
      if (kind === "bar" || kind === "hbar") { d.maxBarThickness = 36; }
      if (s.axis) { d.yAxisID = s.axis; }
      if (kind === "doughnut") { d.backgroundColor = (spec.labels || []).map(function (_, j) { return PALETTE[j % PALETTE.length]; }); d.borderColor = "#fff"; }
      return d;
    });
    var options = {
      responsive: true, maintainAspectRatio: false, animation: false, normalized: true,
      interaction: spec.tooltip === "nearest" ? {mode: "nearest", axis: "x", intersect: false} :
        {mode: kind === "doughnut" ? "nearest" : "index", intersect: kind === "doughnut"},
      plugins: {
        title: {display: !!spec.title, text: spec.title, align: "start", font: {size: 14, weight: "600"},
                padding: {top: 2, bottom: 8}},
        /* Not full size: the legend keeps below the title, never beside or over it. */
        legend: {position: kind === "doughnut" ? "right" : "bottom", fullSize: false, labels: {
          boxWidth: 12,
          filter: function (item) { return ((spec.series || [])[item.datasetIndex] || {}).legend !== false; }
        }},
        pgperfMarkers: {at: spec.markers || []},
        tooltip: {callbacks: {}}
      },
      scales: {}
    };
    if (kind === "doughnut") {
      delete options.scales;
      options.cutout = "45%";
      options.plugins.tooltip.callbacks.label = function (item) {
        return item.label + ": " + valueText(item.raw, formats.y);
      };
    } else {
      var horizontal = kind === "hbar";
      var time = spec.x === "time";
      var x = time ? {type: "linear", ticks: {maxTicksLimit: 8, maxRotation: 0}} :
        {type: "category", ticks: {autoSkip: true, maxRotation: 0}};
      if (time) {
        var xs = [];
        datasets.forEach(function (d) { d.data.forEach(function (p) { xs.push(p[0]); }); });
        var span = xs.length ? Math.max.apply(null, xs) - Math.min.apply(null, xs) : 0;
        if (spec.xmin !== undefined && spec.xmax !== undefined) {
          /* Ticks on round times (every 3 hours of a day, not at 09:06 and 14:40): the axis
           * runs from and to a multiple of the step, so Chart.js keeps the step as it is. */
          var step = timeStep(spec.xmax - spec.xmin);
          x.min = Math.floor(spec.xmin / step) * step;
          x.max = Math.max(Math.ceil(spec.xmax / step) * step, x.min + step);
          x.ticks.stepSize = step;
          x.ticks.maxTicksLimit = 14;
        }
        x.ticks.callback = function (value, index, ticks) {
          var step = ticks && ticks.length > 1 ? Math.abs(ticks[1].value - ticks[0].value) : 0;
          var range = ticks && ticks.length > 1 ? Math.abs(ticks[ticks.length - 1].value - ticks[0].value) : span;
          var label = timeLabel(value, step, range);
          /* Ticks closer than a label's resolution would repeat it: only the first is shown. */
          if (index > 0 && timeLabel(ticks[index - 1].value, step, range) === label) { return null; }
          return label;
        };
        options.plugins.tooltip.callbacks.title = function (items) { return items.length ? fullTime(items[0].parsed.x) : ""; };
      }
      options.scales.x = x;
      options.scales.y = axis(spec, "y", horizontal ? "bottom" : "left", true);
      if (horizontal) {
        options.indexAxis = "y";
        options.scales = {y: {type: "category", ticks: {autoSkip: false}}, x: axis(spec, "y", "bottom", true)};
        datasets.forEach(function (d) { delete d.yAxisID; d.xAxisID = "x"; });
      }
      if ((spec.series || []).some(function (s) { return s.axis === "y2"; })) {
        options.scales.y2 = axis(spec, "y2", "right", false);
      }
      options.plugins.tooltip.callbacks.label = function (item) {
        var s = spec.series[item.datasetIndex] || {};
        var fmt = formats[s.axis || "y"];
        var raw = horizontal ? item.parsed.x : item.parsed.y;
        var text = item.dataset.label + ": " + valueText(raw, fmt);
        if (s.tooltips && s.tooltips[item.dataIndex]) { return [text, s.tooltips[item.dataIndex]]; }
        return text;
      };
    }
    return {
      type: kind === "hbar" ? "bar" : kind,
      data: {labels: spec.labels || undefined, datasets: datasets},
      options: options,
      plugins: [markerPlugin]
    };
  }

  function hasData(spec) {
    return (spec.series || []).some(function (s) {
      return (s.data || []).some(function (p) {
        var v = Array.isArray(p) ? p[1] : p;
        return v !== null && v !== undefined;
      });
    });
  }

  function draw(element) {
    var spec;
    try { spec = JSON.parse(element.textContent); } catch (e) { return; }
    var canvas = document.getElementById(spec.id);
    if (!canvas || typeof Chart === "undefined") { return; }
    var box = canvas.parentNode;
    if (!hasData(spec) && !spec.live) {
      var empty = document.createElement("div");
      empty.className = "empty";
      empty.textContent = (spec.title ? spec.title + ": " : "") + (spec.empty || "no data");
      box.appendChild(empty);
      canvas.setAttribute("data-empty", "true");
      return;
    }
    charts[spec.id] = {chart: new Chart(canvas, config(spec)), spec: spec};
  }

  /* Append one point to each series of a time chart (the overview's live charts). */
  function append(id, t, values, keep) {
    var entry = charts[id];
    if (!entry) { return; }
    var chart = entry.chart;
    chart.data.datasets.forEach(function (d, i) {
      d.data.push([t, values[i] === undefined ? null : values[i]]);
      while (keep && d.data.length > keep) { d.data.shift(); }
    });
    chart.update("none");
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll('script[type="application/json"][data-chart]'), draw);
  }

  window.pgperfCharts = {charts: charts, append: append, bytes: bytes};
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
