// Storyforge's own, self-hosted analytics: one beacon per page view.
// The server only lets this file run after the visitor allows "analytics";
// the beacon endpoint itself refuses (204) without that consent.
(function () {
  var body = JSON.stringify({ path: location.pathname, at: new Date().toISOString() });
  if (navigator.sendBeacon) {
    navigator.sendBeacon("/beacon", new Blob([body], { type: "application/json" }));
  } else {
    fetch("/beacon", { method: "POST", body: body, keepalive: true,
                       headers: { "Content-Type": "application/json" } });
  }
  document.documentElement.setAttribute("data-analytics", "sent");
})();
