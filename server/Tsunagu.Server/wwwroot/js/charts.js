// Draws every <canvas data-chart="{chart.js config as JSON}"> with Chart.js (installed by the build from npm).
(function () {
  "use strict";
  if (typeof Chart === "undefined") { return; }
  Chart.defaults.color = "#1f2933";
  Chart.defaults.font.family = "system-ui, sans-serif";
  document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
    var config = JSON.parse(canvas.getAttribute("data-chart"));
    config.options = Object.assign({ responsive: true, maintainAspectRatio: true, animation: false }, config.options || {});
    new Chart(canvas, config);
  });
})();
