/* shadowcast dashboard: the map's horizon slider and uPlot charts from JSON blocks. */
(function () {
  "use strict";

  function mapSlider() {
    var slider = document.getElementById("horizon");
    var stepsEl = document.getElementById("map-steps");
    if (!slider || !stepsEl) return;
    var steps = JSON.parse(stepsEl.textContent);
    var label = document.getElementById("horizon-label");
    function paint() {
      var i = parseInt(slider.value, 10);
      label.textContent = steps[i];
      document.querySelectorAll("#map line.link").forEach(function (l) {
        var colours = l.getAttribute("data-colours").split(",");
        var utils = l.getAttribute("data-util").split(",");
        l.setAttribute("stroke", colours[i]);
        l.querySelector("title").textContent =
          l.querySelector("title").textContent.split(" · ")[0] + " · " + steps[i] + ": " + utils[i];
      });
    }
    slider.addEventListener("input", paint);
    paint();
  }

  function fmt(unit) {
    if (unit === "pct") return function (u, v) { return v == null ? "-" : (v * 100).toFixed(0) + " %"; };
    if (unit === "mbps") return function (u, v) {
      if (v == null) return "-";
      return Math.abs(v) >= 1000 ? (v / 1000).toFixed(1) + " Gb/s" : v.toFixed(0) + " Mb/s";
    };
    return function (u, v) { return v == null ? "-" : v.toFixed(3); };
  }

  function chart(fig) {
    var spec = JSON.parse(document.getElementById(fig.getAttribute("data-chart")).textContent);
    if (!spec.x.length) { fig.textContent = "No data yet."; return; }
    var data = [spec.x];
    var series = [spec.time === false ? { label: spec.xlabel || "x" } : {}];
    spec.series.forEach(function (s) {
      data.push(s.values);
      series.push({ label: s.label, stroke: s.color, width: s.width || 1, dash: s.dash,
                    value: fmt(spec.unit), spanGaps: !!s.span,
                    points: s.points ? { show: true, size: 8, fill: s.color } : {} });
    });
    if (spec.threshold != null) {
      data.push(spec.x.map(function () { return spec.threshold; }));
      series.push({ label: "alert threshold", stroke: "#888", dash: [2, 4], width: 1,
                    value: fmt(spec.unit) });
    }
    var opts = {
      width: Math.max(320, fig.clientWidth || 800), height: 300,
      series: series,
      bands: spec.bands.map(function (b) { return { series: [b[0], b[1]], fill: b[2] }; }),
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(spec.unit)(u, v); }); }, size: 80 }],
      scales: { x: { time: spec.time !== false } }
    };
    fig.classList.add("rendered");
    var plot = new uPlot(opts, data, fig);
    if (spec.x.length === 1) {  // a lone x: an hour (or 0.05 of a ratio) each side
      var pad = spec.time === false ? 0.05 : 3600;
      plot.setScale("x", { min: spec.x[0] - pad, max: spec.x[0] + pad });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    mapSlider();
    document.querySelectorAll("figure.chart").forEach(chart);
  });
})();
