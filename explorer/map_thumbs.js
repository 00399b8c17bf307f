// The latent map's hover thumbnails (explorer/thumbs.py sends this script in a one-pixel-high iframe of the
// app's own origin). It finds the map's Plotly chart in the page (Streamlit gives the chart's element the
// class st-key-<key>), listens to its hover and unhover events, and shows the hovered point's tile beside
// the point: all in the browser, no server trip.
// Streamlit may replace the chart's element on a rerun, so the script looks for it again every
// CHECK_MS and moves its listeners to the new one. It reads its data from the JSON block "config".
(function () {
  "use strict";
  const CHECK_MS = 400;
  const GAP = 12;                                   // px between the point and the thumbnail
  const cfg = JSON.parse(document.getElementById("config").textContent);
  const host = window.parent;
  const doc = host.document;
  const tileOf = new Map(cfg.ids.map((id, i) => [id, i]));
  const [th, tw] = cfg.tile;
  const w = tw * cfg.scale, h = th * cfg.scale;

  const old = doc.getElementById(cfg.tip);          // left by an earlier copy of this script
  if (old) old.remove();
  const tip = doc.createElement("div");
  tip.id = cfg.tip;
  tip.setAttribute("aria-hidden", "true");
  Object.assign(tip.style, {
    position: "fixed", display: "none", pointerEvents: "none", zIndex: "1000",
    width: w + "px", height: h + "px", backgroundColor: "#fff", backgroundRepeat: "no-repeat",
    backgroundImage: "url(" + JSON.stringify(cfg.sprite) + ")",
    backgroundSize: cfg.size[0] * cfg.scale + "px " + cfg.size[1] * cfg.scale + "px",
    imageRendering: "pixelated", boxShadow: "0 1px 6px rgba(0, 0, 0, 0.45)", borderRadius: "2px",
  });
  doc.body.appendChild(tip);

  let chart = null;

  function hide() {
    tip.style.display = "none";
    delete tip.dataset.index;
  }

  // The point's place on the page: from its axes (a WebGL trace's event may carry no pointer position).
  function where(gd, pt, ev) {
    const box = gd.getBoundingClientRect();
    const xa = pt.xaxis, ya = pt.yaxis;
    if (xa && ya && typeof xa.d2p === "function") {
      return [box.left + xa._offset + xa.d2p(pt.x), box.top + ya._offset + ya.d2p(pt.y)];
    }
    const e = ev.event || {};
    return [e.clientX || box.left, e.clientY || box.top];
  }

  function onHover(ev) {
    if (!window.frameElement || !window.frameElement.isConnected) { stop(); return; }   // our iframe is gone
    const pt = (ev.points || []).find((p) => tileOf.has(p.customdata));
    if (!pt || !chart) { hide(); return; }
    const i = tileOf.get(pt.customdata);
    const col = i % cfg.per_row, row = Math.floor(i / cfg.per_row);
    tip.style.backgroundPosition = -col * w + "px " + -row * h + "px";
    tip.dataset.index = String(pt.customdata);
    const [x, y] = where(chart, pt, ev);
    // Above and to the left of the point (Plotly's hover label sits to its right); flipped at the window's edges.
    let left = x - GAP - w, top = y - GAP - h;
    if (left < 0) left = x + GAP;
    if (top < 0) top = y + GAP;
    tip.style.left = Math.min(left, host.innerWidth - w) + "px";
    tip.style.top = Math.min(top, host.innerHeight - h) + "px";
    tip.style.display = "block";
  }

  function detach() {
    if (chart && typeof chart.removeListener === "function") {
      chart.removeListener("plotly_hover", onHover);
      chart.removeListener("plotly_unhover", hide);
    }
    chart = null;
  }

  function listening(gd) {
    return gd._ev && typeof gd._ev.listeners === "function" && gd._ev.listeners("plotly_hover").includes(onHover);
  }

  function attach() {
    const gd = doc.querySelector(cfg.chart);
    if (gd === chart && (!gd || listening(gd))) return;
    detach();
    hide();
    if (!gd || typeof gd.on !== "function") return;   // not drawn yet: the next check tries again
    gd.on("plotly_hover", onHover);
    gd.on("plotly_unhover", hide);
    chart = gd;
  }

  const timer = setInterval(attach, CHECK_MS);

  function stop() {
    clearInterval(timer);
    detach();
    tip.remove();
  }

  window.addEventListener("pagehide", stop);
  attach();
})();
