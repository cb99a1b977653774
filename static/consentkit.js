/* flask-consentkit: progressive enhancement of the server-rendered cookie banner.
 * Every action also works without this script (plain form POSTs); this makes them
 * happen without a reload, activates newly allowed gated markup in place and
 * manages focus. No framework, no request to any other origin. */
(function () {
  "use strict";
  var doc = document;
  /* a page swapped in whole (htmx boost, Turbo) runs this script again: the
   * listeners of the earlier run go, so that each control acts once */
  if (window.consentkit && window.consentkit.off) window.consentkit.off();
  var offs = [];
  function on(type, fn) {
    doc.addEventListener(type, fn);
    offs.push(function () { doc.removeEventListener(type, fn); });
  }
  var me = doc.currentScript;
  var nonce = (me && me.nonce) || "";
  var root = doc.getElementById("consentkit");
  var data = {};
  try {
    data = JSON.parse(doc.getElementById("consentkit-data").textContent);
  } catch (e) { /* no banner on this page: activation still works */ }
  var granted = data.granted || ["necessary"];
  /* the server sent this page a browser policy for these categories; granting one of
   * data.reloadOn lets the browser reach a host that policy blocks */
  var reloadOn = data.reloadOn || [];
  var SCROLL = "consentkit:scroll";
  var banner = doc.getElementById("consentkit-banner");
  var dialog = doc.getElementById("consentkit-preferences");
  var opener = null;

  function $$(selector) {
    return Array.prototype.slice.call(doc.querySelectorAll(selector));
  }

  /* Gated markup: make what `allowed` now grants live, in place. */
  function activate(allowed) {
    var n = 0;
    $$('script[type="text/plain"][data-consent]').forEach(function (old) {
      if (allowed.indexOf(old.getAttribute("data-consent")) < 0) return;
      var s = doc.createElement("script");
      for (var i = 0; i < old.attributes.length; i++) {
        var a = old.attributes[i];
        if (a.name !== "type") s.setAttribute(a.name, a.value);
      }
      var type = old.getAttribute("data-type");
      if (type) s.type = type;
      if (nonce) s.nonce = nonce;
      s.async = false;
      s.text = old.text;
      old.parentNode.replaceChild(s, old);
      n++;
    });
    $$("iframe[data-consent][data-consent-src]").forEach(function (f) {
      var cat = f.getAttribute("data-consent");
      if (allowed.indexOf(cat) < 0 || f.getAttribute("src")) return;
      f.src = f.getAttribute("data-consent-src");
      n++;
    });
    $$("[data-consent-placeholder]").forEach(function (p) {
      if (allowed.indexOf(p.getAttribute("data-consent-placeholder")) >= 0) p.remove();
    });
    return n;
  }

  /* Google Consent Mode v2: a type is granted only if every category mapped to it is. */
  function gtagUpdate(allowed) {
    var mode = data.consentMode || {};
    if (typeof window.gtag !== "function" || !Object.keys(mode).length) return;
    var update = {};
    Object.keys(mode).forEach(function (cat) {
      mode[cat].forEach(function (type) {
        var ok = allowed.indexOf(cat) >= 0 && update[type] !== "denied";
        update[type] = ok ? "granted" : "denied";
      });
    });
    window.gtag("consent", "update", update);
  }

  function padPage(on) {
    doc.documentElement.style.scrollPaddingBottom = on ? banner.offsetHeight + "px" : "";
  }

  function openBanner(from) {
    if (!banner) return;
    opener = from || doc.activeElement;
    banner.hidden = false;
    setReopen(false);
    padPage(true);
    banner.focus();
  }

  function closeBanner() {
    if (!banner || banner.hidden) return;
    banner.hidden = true;
    padPage(false);
    setReopen(true);
    restore();
  }

  function setReopen(show) {
    $$(".ck-reopen").forEach(function (r) { r.hidden = !show || !data.decided; });
  }

  function restore() {
    var target = opener && doc.contains(opener) && opener !== doc.body ? opener : null;
    if (!target || !target.getClientRects().length) {  /* gone or hidden: the reopen control */
      target = doc.querySelector(".ck-reopen:not([hidden])");
    }
    opener = null;
    if (target) target.focus();
  }

  function openPrefs(category, from) {
    if (!dialog) return false;
    if (!opener) opener = from || doc.activeElement;
    if (!dialog.open) dialog.showModal();
    var toggle = category && doc.getElementById("consentkit-cat-" + category);
    if (toggle && !toggle.disabled) {
      toggle.focus();
      toggle.scrollIntoView({ block: "center" });
    } else {
      dialog.querySelector(".ck-switch:not([disabled]), .ck-btn").focus();
    }
    return true;
  }

  function sync(allowed) {
    $$('#consentkit input[name="categories"]').forEach(function (box) {
      if (!box.disabled) box.checked = allowed.indexOf(box.value) >= 0;
    });
  }

  function announce(text) {
    var status = root && root.querySelector(".ck-status");
    if (status) status.textContent = text;
  }

  function reload(state) {
    doc.dispatchEvent(new CustomEvent("consentkit:change", { detail: state }));
    try {
      sessionStorage.setItem(SCROLL, JSON.stringify([location.href, scrollX, scrollY]));
    } catch (e) { /* storage off: the browser's own scroll restoration still applies */ }
    location.reload();
  }

  function apply(state) {
    var before = data.decided ? granted : [];
    var withdrawn = before.filter(function (c) { return state.granted.indexOf(c) < 0; });
    var widens = reloadOn.some(function (c) { return state.granted.indexOf(c) >= 0; });
    if (withdrawn.length || widens) {
      /* running scripts cannot be stopped, and the page's policy cannot be widened:
       * reload so that the server's answer for the new choice rules */
      reload(state);
      return;
    }
    granted = state.granted;
    data.decided = true;
    data.granted = granted;
    sync(granted);
    activate(granted);
    gtagUpdate(granted);
    if (dialog && dialog.open) dialog.close();
    closeBanner();
    announce(data.saved || "");
    doc.dispatchEvent(new CustomEvent("consentkit:change", { detail: state }));
  }

  function choose(form, button) {
    var categories = [];
    Array.prototype.forEach.call(form.querySelectorAll('input[name="categories"]'), function (box) {
      if (box.checked && !box.disabled) categories.push(box.value);
    });
    var source = form.querySelector('input[name="source"]');
    fetch(form.getAttribute("action"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({
        action: button.value,
        categories: categories,
        source: source ? source.value : "banner"
      })
    }).then(function (response) {
      if (!response.ok) throw new Error(String(response.status));
      return response.json();
    }).then(apply, function () {
      /* fall back to the plain form POST, which always works */
      form.setAttribute("data-consentkit-native", "");
      form.requestSubmit(button);
    });
  }

  if (root) {
    root.addEventListener("submit", function (event) {
      var form = event.target;
      var button = event.submitter;
      if (!button || form.hasAttribute("data-consentkit-native")) return;
      if (button.hasAttribute("data-consentkit-settings")) {
        if (openPrefs(null, button)) event.preventDefault();
      } else if (button.name === "action" && window.fetch) {
        event.preventDefault();
        choose(form, button);
      }
    });
    if (dialog) {
      dialog.addEventListener("close", function () {
        sync(granted);
        if (banner && !banner.hidden) {
          var settings = banner.querySelector("[data-consentkit-settings]");
          opener = null;
          if (settings) settings.focus();
        } else {
          restore();
        }
      });
    }
  }

  on("click", function (event) {
    var el = event.target.closest && event.target.closest(
      "[data-consentkit-open], [data-consentkit-reopen], [data-consentkit-close]");
    if (!el) return;
    if (el.hasAttribute("data-consentkit-close")) {
      if (dialog && dialog.open) dialog.close();
      else closeBanner();
    } else if (el.hasAttribute("data-consentkit-reopen")) {
      if (!banner) return;
      event.preventDefault();
      openBanner(el);
    } else if (openPrefs(el.getAttribute("data-consentkit-open"), el)) {
      event.preventDefault();
    }
  });

  on("keydown", function (event) {
    if (event.key === "Escape" && banner && !banner.hidden && data.decided &&
        !(dialog && dialog.open)) {
      closeBanner();
    }
  });

  if (banner && !banner.hidden) {
    padPage(true);
    if (doc.activeElement === doc.body || !doc.activeElement) banner.focus();
  }

  try {
    var kept = JSON.parse(sessionStorage.getItem(SCROLL) || "null");
    sessionStorage.removeItem(SCROLL);
    if (kept && kept[0] === location.href) {
      addEventListener("load", function () { scrollTo(kept[1], kept[2]); });
    }
  } catch (e) { /* nothing kept */ }

  window.consentkit = {
    activate: activate, open: openPrefs, reopen: openBanner,
    off: function () { offs.forEach(function (f) { f(); }); }
  };
})();
