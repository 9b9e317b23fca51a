// Live countdowns: each .countdown knows its deadline and the server's clock at render time,
// so a browser whose clock is off still counts correctly.
(function () {
  var items = Array.prototype.slice.call(document.querySelectorAll(".countdown[data-until]"));
  if (!items.length) return;
  var loaded = Date.now();
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    items.forEach(function (el) {
      var serverNow = Date.parse(el.dataset.now) + (Date.now() - loaded);
      var left = Math.round((Date.parse(el.dataset.until) - serverNow) / 1000);
      if (left <= 0) {
        el.textContent = "ended — refresh";
        el.classList.add("ended");
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + "h " + pad(m) + "m " : m + "m ") + pad(s) + "s left";
    });
  }
  tick();
  setInterval(tick, 1000);
})();
