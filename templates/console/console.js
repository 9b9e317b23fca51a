// Live countdowns: each .countdown knows its deadline and the server's clock at render time,
// so a browser whose clock is off still counts correctly. When one reaches zero the page's live
// part asks the server again at once (htmx listens for "countdown-ended"), so the new state shows
// without a reload; otherwise it refreshes every few seconds.
(function () {
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var ended = false;
    document.querySelectorAll(".countdown[data-until]").forEach(function (el) {
      if (!el.dataset.loaded) el.dataset.loaded = String(Date.now());
      var serverNow = Date.parse(el.dataset.now) + (Date.now() - Number(el.dataset.loaded));
      var left = Math.round((Date.parse(el.dataset.until) - serverNow) / 1000);
      if (left <= 0) {
        if (!el.classList.contains("ended")) ended = true;
        el.textContent = "ended";
        el.classList.add("ended");
        return;
      }
      var h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
      el.textContent = (h ? h + "h " + pad(m) + "m " : m + "m ") + pad(s) + "s left";
    });
    if (ended) document.body.dispatchEvent(new Event("countdown-ended"));
  }
  tick();
  setInterval(tick, 1000);
})();
