/* 丽江加油 map screen: plain JS on Leaflet 1.9 (no tiles: the base map is our own roads layer).
 *
 * Data: /v1/map/region (outline, centre), /v1/map/roads (base map + traffic), /v1/map/stations
 * (H3 price heatmap below zoom 13, priced markers from 13), /v1/stations/nearby (the list),
 * /v1/stations/{id} (the detail sheet), /v1/route (traffic-aware route from "my position").
 * Everything is WGS-84 (coord=wgs84): our base map is drawn from the same coordinates.
 */
(function () {
  "use strict";

  const I18N = {
    zh: {
      title: "丽江加油", grade: "油品", sort: "排序", sort_distance: "距离", sort_price: "价格",
      sort_eta: "到达时间", sort_total_cost: "总花费", nearby: "附近加油站", loading: "加载中…",
      tap_to_set: "点地图设为我的位置", eta: "预计用时", distance: "距离", delay: "拥堵延误",
      minutes: "分钟", km: "公里", stations: "座", open: "营业中", closed: "已关闭",
      temporarily_closed: "暂停营业", no_stations: "附近没有找到加油站", no_price: "暂无价格",
      list_price: "挂牌价", effective_price: "优惠后", grade_col: "油品", promotions: "优惠",
      no_promotions: "当前没有适用的优惠", routing: "正在计算路线…", route_from: "从我的位置出发",
      route_failed: "无法计算路线", sort_unavailable: "暂不支持按“{sort}”排序，已改为按距离排序",
      load_failed: "加载失败", legend: "{grade}# 最低到手价 (元/升)", cell_tip: "{n} 座加油站 · 最低 {p} 元",
      cell_tip_none: "{n} 座加油站 · 暂无价格", my_position_set: "已将此处设为我的位置",
      zoom_in_more: "放大地图查看每座加油站的价格", promo_badge: "优惠", per_litre: "元/升",
      no_delay: "畅通", brand_sinopec: "中国石化", brand_petrochina: "中国石油", brand_cnooc: "中国海油",
      brand_shell: "壳牌", brand_other: "加油站", yuan: "元",
    },
    en: {
      title: "Lijiang Fuel", grade: "Grade", sort: "Sort", sort_distance: "Distance", sort_price: "Price",
      sort_eta: "Arrival", sort_total_cost: "Total cost", nearby: "Stations nearby", loading: "Loading…",
      tap_to_set: "Tap the map to set my position", eta: "Drive time", distance: "Distance", delay: "Delay",
      minutes: "min", km: "km", stations: "stations", open: "Open", closed: "Closed",
      temporarily_closed: "Temporarily closed", no_stations: "No stations found nearby", no_price: "No price",
      list_price: "List", effective_price: "You pay", grade_col: "Grade", promotions: "Promotions",
      no_promotions: "No promotion applies now", routing: "Finding the route…", route_from: "From my position",
      route_failed: "Could not find a route", sort_unavailable: "Sorting by “{sort}” is not available yet: sorted by distance",
      load_failed: "Could not load", legend: "{grade}# lowest price (CNY/L)", cell_tip: "{n} stations · from {p} CNY",
      cell_tip_none: "{n} stations · no price", my_position_set: "My position set here",
      zoom_in_more: "Zoom in to see each station's price", promo_badge: "Offer", per_litre: "CNY/L",
      no_delay: "Clear", brand_sinopec: "Sinopec", brand_petrochina: "PetroChina", brand_cnooc: "CNOOC",
      brand_shell: "Shell", brand_other: "Fuel station", yuan: "CNY",
    },
  };
  const SORT_PARAM = { distance: "distance", price: "effective_price", eta: "eta", total_cost: "total_cost" };
  const LEVEL_COLOURS = { free: "#34c759", slow: "#f29a1f", congested: "#e03b35", closed: "#7a1f1f" };
  const CLASS_STYLE = {
    motorway: ["#e8849a", 5], motorway_link: ["#e8849a", 3], trunk: ["#f4a582", 5], trunk_link: ["#f4a582", 3],
    primary: ["#f6c66b", 4.5], primary_link: ["#f6c66b", 3], secondary: ["#f3e58c", 4], secondary_link: ["#f3e58c", 2.5],
    tertiary: ["#ffffff", 3.5], tertiary_link: ["#ffffff", 2.5],
  };
  const TRAFFIC_CLASSES = new Set(["motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link",
    "secondary", "secondary_link", "tertiary", "tertiary_link"]);
  const LIST_RADIUS_M = 20000;
  const LIST_LIMIT = 30;

  const S = {
    lang: "zh", grade: "92", sort: "distance", region: null, me: null, selected: null,
    viewToken: 0, listToken: 0, sheetToken: 0, lastStations: null, lastList: null, lastDetail: null,
    lastRoute: null, messageTimer: null,
  };
  const $ = (sel) => document.querySelector(sel);

  function t(key, vars) {
    let s = (I18N[S.lang] && I18N[S.lang][key]) || I18N.zh[key] || key;
    if (vars) for (const k of Object.keys(vars)) s = s.split("{" + k + "}").join(String(vars[k]));
    return s;
  }
  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function stationName(s) {
    const zh = s.name && s.name.trim(), en = s.name_en && s.name_en.trim();
    const brand = t("brand_" + (s.brand || "other"));
    return (S.lang === "en" ? en || zh : zh || en) || brand;
  }
  function iconFor(brand) { return "/static/icons/" + (brand || "other") + ".svg"; }
  function money(x) { return x == null ? "--" : Number(x).toFixed(2); }

  class ApiError extends Error {
    constructor(status, message, param) { super(message); this.status = status; this.param = param; }
  }
  async function api(path, params) {
    const q = params ? "?" + new URLSearchParams(params).toString() : "";
    let r;
    try {
      r = await fetch(path + q, { headers: { Accept: "application/json" } });
    } catch (e) {
      throw new ApiError(0, String(e && e.message ? e.message : e));
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(r.status, err.message || r.status + " " + r.statusText, err.param);
    }
    return body;
  }

  function showMessage(text, kind) {
    const el = $("#message");
    el.textContent = text;
    el.className = kind || "";
    el.hidden = false;
    clearTimeout(S.messageTimer);
    S.messageTimer = setTimeout(() => { el.hidden = true; }, 6000);
  }

  // ---- map -------------------------------------------------------------------------------------
  let map, roadsLayer, stationsLayer, heatLayer, outlineLayer, routeLayer, meMarker, legend;
  let roadsRenderer, heatRenderer, routeRenderer;
  const markerById = new Map();

  function initMap(region) {
    map = L.map("map", { zoomControl: true, attributionControl: true, minZoom: 5, maxZoom: 19, zoomSnap: 1 });
    map.createPane("roads").style.zIndex = 300;
    map.createPane("heat").style.zIndex = 350;
    map.createPane("outline").style.zIndex = 360;
    map.createPane("route").style.zIndex = 450;
    roadsRenderer = L.canvas({ pane: "roads", padding: 0.2 });
    heatRenderer = L.svg({ pane: "heat" });
    routeRenderer = L.svg({ pane: "route" });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com" title="Leaflet">Leaflet</a>');
    map.attributionControl.addAttribution(
      '<a href="' + esc(region.attribution_url) + '" data-test="osm-attribution">' + esc(region.attribution) + "</a>");
    outlineLayer = L.geoJSON(region.outline, {
      pane: "outline", interactive: false,
      style: { color: "#3d5afe", weight: 2, dashArray: "6 5", fill: false, opacity: 0.7 },
    }).addTo(map);
    roadsLayer = L.layerGroup().addTo(map);
    heatLayer = L.layerGroup().addTo(map);
    stationsLayer = L.layerGroup().addTo(map);
    routeLayer = L.layerGroup().addTo(map);
    legend = L.control({ position: "bottomleft" });
    legend.onAdd = function () {
      const div = L.DomUtil.create("div");
      div.id = "legend";
      div.setAttribute("data-test", "legend");
      div.hidden = true;
      return div;
    };
    legend.addTo(map);
    map.setView([region.centre.lat, region.centre.lon], region.default_zoom);
    map.on("moveend", debounce(loadView, 150));
    map.on("click", (e) => {
      setMe(e.latlng, true);
      showMessage(t("my_position_set"));
    });
  }

  function debounce(fn, ms) {
    let h = null;
    return function () { clearTimeout(h); h = setTimeout(fn, ms); };
  }

  function setMe(latlng, reload) {
    S.me = L.latLng(latlng.lat, latlng.lng);
    if (!meMarker) {
      meMarker = L.marker(S.me, {
        icon: L.divIcon({ className: "my-position-icon", html: '<div class="my-position" data-test="my-position"></div>', iconSize: [18, 18], iconAnchor: [9, 9] }),
        interactive: false, keyboard: false, zIndexOffset: 1000,
      }).addTo(map);
    } else {
      meMarker.setLatLng(S.me);
    }
    if (reload) {
      loadList();
      if (S.selected != null) loadRoute(S.selected);
    }
  }

  function viewBbox() {
    const b = map.getBounds().pad(0.1);
    const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85, 85), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85, 85)]
      .map((v) => v.toFixed(6)).join(",");
  }

  async function loadView() {
    const token = ++S.viewToken;
    const params = { bbox: viewBbox(), zoom: String(map.getZoom()), coord: "wgs84" };
    $("#loading").hidden = false;
    const roads = api("/v1/map/roads", params).then((fc) => { if (token === S.viewToken) drawRoads(fc); });
    const stations = api("/v1/map/stations", { ...params, grade: S.grade })
      .then((fc) => { if (token === S.viewToken) drawStations(fc); });
    const results = await Promise.allSettled([roads, stations]);
    if (token !== S.viewToken) return;
    $("#loading").hidden = true;
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showMessage(t("load_failed") + ": " + failed.reason.message, "error");
  }

  // Roads keep their class colour; slow/congested/closed major roads take the traffic colour
  // (free-flowing roads stay calm so that the route drawn on top stands out).
  function roadStyle(p) {
    const z = map.getZoom();
    const k = z >= 15 ? 1.2 : z >= 13 ? 0.9 : z >= 11 ? 0.6 : 0.45;
    const cls = CLASS_STYLE[p.highway];
    const jam = TRAFFIC_CLASSES.has(p.highway) && (p.level === "slow" || p.level === "congested");
    if (p.level === "closed") return { color: LEVEL_COLOURS.closed, weight: 4 * k, dashArray: "4 4", opacity: 0.9 };
    if (cls) return { color: jam ? LEVEL_COLOURS[p.level] : cls[0], weight: cls[1] * k, opacity: 0.95 };
    return { color: "#ffffff", weight: 2.4 * k, opacity: 1 };
  }

  function drawRoads(fc) {
    roadsLayer.clearLayers();
    // a grey casing under everything, then the coloured lines on top: one canvas
    roadsLayer.addLayer(L.geoJSON(fc, {
      renderer: roadsRenderer, pane: "roads", interactive: false,
      style: (f) => ({ color: "#c7c1b6", weight: roadStyle(f.properties).weight + 1.6, opacity: 1 }),
    }));
    roadsLayer.addLayer(L.geoJSON(fc, {
      renderer: roadsRenderer, pane: "roads", interactive: false, style: (f) => roadStyle(f.properties),
    }));
    $("#map").setAttribute("data-roads", String(fc.features.length));
  }

  function drawStations(fc) {
    S.lastStations = fc;
    $("#map").setAttribute("data-mode", fc.mode);
    $("#map").setAttribute("data-grade", fc.grade);
    stationsLayer.clearLayers();
    heatLayer.clearLayers();
    markerById.clear();
    if (fc.mode === "cells") drawCells(fc); else drawMarkers(fc);
  }

  function drawMarkers(fc) {
    document.getElementById("legend").hidden = true;
    const prices = fc.features.map((f) => f.properties.effective_price).filter((p) => p != null);
    const cheapest = prices.length ? Math.min.apply(null, prices) : null;
    for (const f of fc.features) {
      const p = f.properties;
      const [lon, lat] = f.geometry.coordinates;
      const classes = ["station-marker", "brand-" + p.brand];
      if (p.status !== "open") classes.push("closed");
      if (cheapest != null && p.effective_price === cheapest) classes.push("cheapest");
      if (S.selected === p.id) classes.push("selected");
      const labelCls = "price-label" + (p.label == null ? " none" : p.promotion ? " promo" : "");
      const html = '<div class="' + classes.join(" ") + '" data-test="station-marker" data-station-id="' + p.id + '" title="' + esc(stationName(p)) + '">'
        + '<span class="' + labelCls + '" data-test="price-label">' + esc(p.label == null ? "--" : p.label) + "</span>"
        + '<img class="brand-icon" src="' + esc(p.icon) + '" alt=""></div>';
      const m = L.marker([lat, lon], {
        icon: L.divIcon({ className: "station-marker-wrap", html, iconSize: [64, 50], iconAnchor: [32, 50] }),
        riseOnHover: true, title: stationName(p),
      });
      m.on("click", (e) => { L.DomEvent.stop(e); openStation(p.id); });
      m.addTo(stationsLayer);
      markerById.set(p.id, m);
    }
  }

  function drawCells(fc) {
    const layer = L.geoJSON(fc, {
      renderer: heatRenderer, pane: "heat", className: "heatmap-cell",
      style: (f) => ({ fillColor: f.properties.fill, fillOpacity: 0.55, color: "#ffffff", weight: 1, opacity: 0.9 }),
      onEachFeature: (f, l) => {
        const p = f.properties;
        const tip = p.min_price != null ? t("cell_tip", { n: p.count, p: money(p.min_price) }) : t("cell_tip_none", { n: p.count });
        l.bindTooltip(tip, { className: "cell-tip", sticky: true });
        l.on("click", (e) => {
          L.DomEvent.stop(e);
          map.setView([p.centre[1], p.centre[0]], Math.max(map.getZoom() + 2, 13));
        });
      },
    });
    layer.addTo(heatLayer);
    heatLayer.eachLayer(() => {});
    // the cells' SVG paths carry data attributes for tests and styling
    layer.eachLayer((l) => {
      const el = l.getElement && l.getElement();
      if (el) {
        el.setAttribute("data-test", "heatmap-cell");
        el.setAttribute("data-count", String(l.feature.properties.count));
        el.setAttribute("data-min-price", String(l.feature.properties.min_price));
      }
    });
    renderLegend(fc);
  }

  function renderLegend(fc) {
    const el = document.getElementById("legend");
    if (!el) return;
    if (!fc || fc.mode !== "cells") { el.hidden = true; return; }
    const c = fc.colours;
    const r = fc.price_range;
    el.innerHTML = "<div>" + esc(t("legend", { grade: fc.grade })) + "</div>"
      + '<div class="bar" style="background: linear-gradient(90deg,' + c.cheap + "," + c.mid + "," + c.dear + ')"></div>'
      + '<div class="ends"><span id="legend-min">' + money(r && r.min) + '</span><span id="legend-max">' + money(r && r.max) + "</span></div>"
      + '<div class="ends"><span>' + esc(t("zoom_in_more")) + "</span></div>";
    el.hidden = false;
  }

  // ---- list ------------------------------------------------------------------------------------
  async function loadList() {
    if (!S.me) return;
    const token = ++S.listToken;
    const params = {
      lat: S.me.lat.toFixed(7), lon: S.me.lng.toFixed(7), radius_m: String(LIST_RADIUS_M),
      grade: S.grade, sort: SORT_PARAM[S.sort] || "distance", limit: String(LIST_LIMIT), coord: "wgs84",
    };
    try {
      const body = await api("/v1/stations/nearby", params);
      if (token !== S.listToken) return;
      S.lastList = body;
      renderList();
    } catch (e) {
      if (token !== S.listToken) return;
      if (e.status === 422 && S.sort !== "distance" && (e.param === "sort" || /sort/.test(e.message))) {
        const label = t("sort_" + S.sort);
        S.sort = "distance";
        $("#sort-select").value = "distance";
        showMessage(t("sort_unavailable", { sort: label }), "error");
        return loadList();
      }
      showMessage(t("load_failed") + ": " + e.message, "error");
    }
  }

  function renderList() {
    const body = S.lastList;
    const ul = $("#station-list");
    if (!body) return;
    $("#list-count").textContent = body.count + " " + t("stations");
    if (!body.results.length) {
      ul.innerHTML = '<li class="empty">' + esc(body.note || t("no_stations")) + "</li>";
      return;
    }
    ul.innerHTML = body.results.map((s) => {
      const g = s.grades && s.grades[S.grade];
      const eff = g && g.effective_price, list = g && g.list_price;
      const promo = g && g.promotions_applied && g.promotions_applied.length;
      const dist = s.distance_m != null ? (s.distance_m >= 1000 ? (s.distance_m / 1000).toFixed(1) + " " + t("km") : Math.round(s.distance_m) + " m") : "";
      const status = s.status !== "open" ? '<span class="badge closed">' + esc(t(s.status)) + "</span>" : "";
      return '<li class="station-item' + (S.selected === s.id ? " selected" : "") + '" data-test="station-item" data-station-id="' + s.id + '">'
        + '<img class="brand-icon" src="' + iconFor(s.brand) + '" alt="">'
        + '<div class="info"><div class="name">' + esc(stationName(s)) + "</div>"
        + '<div class="meta">' + esc(dist) + (promo ? '<span class="badge">' + esc(t("promo_badge")) + "</span>" : "") + status + "</div></div>"
        + '<div class="price">' + (eff != null
          ? '<span class="item-price">' + money(eff) + "</span>" + (list != null && list !== eff ? "<s>" + money(list) + "</s>" : "")
          : '<span class="item-price none"><small>' + esc(t("no_price")) + "</small></span>") + "</div></li>";
    }).join("");
  }

  // ---- station sheet and route ---------------------------------------------------------------------
  async function openStation(id) {
    S.selected = id;
    const token = ++S.sheetToken;
    document.querySelectorAll(".station-marker.selected, .station-item.selected").forEach((el) => el.classList.remove("selected"));
    document.querySelectorAll('[data-station-id="' + id + '"]').forEach((el) => el.classList.add("selected"));
    $("#station-sheet").hidden = false;
    $("#station-sheet").setAttribute("data-station-id", String(id));
    $("#station-detail").innerHTML = '<div class="addr">' + esc(t("loading")) + "</div>";
    loadRoute(id);
    try {
      const body = await api("/v1/stations/" + id, { coord: "wgs84" });
      if (token !== S.sheetToken) return;
      S.lastDetail = body.station;
      renderDetail();
    } catch (e) {
      if (token !== S.sheetToken) return;
      $("#station-detail").innerHTML = '<div class="addr">' + esc(t("load_failed") + ": " + e.message) + "</div>";
    }
  }

  function renderDetail() {
    const s = S.lastDetail;
    if (!s) return;
    const rows = Object.keys(s.grades).map((g) => {
      const p = s.grades[g];
      return '<tr class="grade-row' + (g === S.grade ? " current" : "") + '" data-grade="' + g + '">'
        + "<td>" + g + "#</td><td class=\"list-price\">" + money(p.list_price) + '</td><td class="effective-price">' + money(p.effective_price) + "</td></tr>";
    }).join("");
    const promos = [];
    const seen = new Set();
    for (const g of Object.keys(s.grades)) {
      for (const a of s.grades[g].promotions_applied || []) {
        const key = a.id + ":" + g;
        if (seen.has(key)) continue;
        seen.add(key);
        const title = S.lang === "en" ? a.title_en || a.title : a.title || a.title_en;
        promos.push('<li class="promo" data-test="promotion">' + esc(g + "# · " + title) + " (−" + money(a.saving) + " " + esc(t("per_litre")) + ")</li>");
      }
    }
    const status = s.status !== "open" ? '<span class="badge closed">' + esc(t(s.status)) + "</span>" : s.open_now ? '<span class="badge">' + esc(t("open")) + "</span>" : "";
    $("#station-detail").innerHTML = '<h2 data-test="station-name"><img src="' + iconFor(s.brand) + '" alt="">' + esc(stationName(s)) + status + "</h2>"
      + '<div class="addr">' + esc(t("brand_" + s.brand)) + (s.address ? " · " + esc(s.address) : "") + (s.opening_hours ? " · " + esc(s.opening_hours) : "") + "</div>"
      + '<table class="prices" data-test="prices"><tr><th>' + esc(t("grade_col")) + "</th><th>" + esc(t("list_price")) + "</th><th>" + esc(t("effective_price")) + "</th></tr>" + (rows || "<tr><td colspan=3>" + esc(t("no_price")) + "</td></tr>") + "</table>"
      + '<div class="addr">' + esc(t("promotions")) + '</div><ul class="promos">' + (promos.join("") || '<li class="none">' + esc(t("no_promotions")) + "</li>") + "</ul>";
  }

  async function loadRoute(id) {
    const target = markerById.get(id);
    let to = target ? target.getLatLng() : null;
    routeLayer.clearLayers();
    $("#route-error").hidden = true;
    $("#route-eta").textContent = "";
    $("#route-distance").textContent = "";
    $("#route-delay").textContent = "";
    $("#route-eta").removeAttribute("data-minutes");
    $("#route-status").textContent = t("routing");
    const token = S.sheetToken;
    try {
      if (!to) {
        const body = await api("/v1/stations/" + id, { coord: "wgs84" });
        to = L.latLng(body.station.lat, body.station.lon);
      }
      const route = await api("/v1/route", {
        from: S.me.lat.toFixed(7) + "," + S.me.lng.toFixed(7), to: to.lat.toFixed(7) + "," + to.lng.toFixed(7), coord: "wgs84",
      });
      if (token !== S.sheetToken || S.selected !== id) return;
      S.lastRoute = route;
      drawRoute(route);
      renderRoute();
    } catch (e) {
      if (token !== S.sheetToken) return;
      S.lastRoute = null;
      $("#route-status").textContent = "";
      $("#route-error").textContent = t("route_failed") + ": " + e.message;
      $("#route-error").hidden = false;
    }
  }

  function renderRoute() {
    const r = S.lastRoute;
    if (!r) return;
    const minutes = Math.max(1, Math.round(r.duration_s / 60));
    $("#route-status").textContent = t("route_from");
    $("#route-eta").textContent = minutes + " " + t("minutes");
    $("#route-eta").setAttribute("data-minutes", String(minutes));
    $("#route-distance").textContent = (r.distance_m / 1000).toFixed(1) + " " + t("km");
    const delay = Math.round((r.delay_s || 0) / 60);
    $("#route-delay").textContent = delay >= 1 ? "+" + delay + " " + t("minutes") : t("no_delay");
  }

  function drawRoute(route) {
    routeLayer.clearLayers();
    const segs = route.segments && route.segments.length ? route.segments : [{ level: "free", coordinates: route.geometry.coordinates }];
    const all = [];
    for (const s of segs) {
      const ll = s.coordinates.map((c) => [c[1], c[0]]);
      all.push(...ll);
      L.polyline(ll, { renderer: routeRenderer, pane: "route", color: "#1646a8", weight: 11, opacity: 0.9, className: "route-casing", interactive: false }).addTo(routeLayer);
    }
    for (const s of segs) {
      const ll = s.coordinates.map((c) => [c[1], c[0]]);
      L.polyline(ll, {
        renderer: routeRenderer, pane: "route", color: LEVEL_COLOURS[s.level] || "#1e63d6", weight: 6, opacity: 1,
        className: "route-segment route-" + (s.level || "unknown"), interactive: false,
      }).addTo(routeLayer);
    }
    const el = document.getElementById("map");
    el.setAttribute("data-route-segments", String(segs.length));
    if (all.length) {
      const b = L.latLngBounds(all).extend(S.me);
      const mapH = el.clientHeight;
      map.fitBounds(b, { paddingTopLeft: [30, 30], paddingBottomRight: [30, Math.round(mapH * 0.55)], maxZoom: 16 });
    }
  }

  function closeSheet() {
    S.selected = null;
    ++S.sheetToken;
    $("#station-sheet").hidden = true;
    routeLayer.clearLayers();
    document.querySelectorAll(".selected").forEach((el) => el.classList.remove("selected"));
  }

  // ---- language ----------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.getAttribute("data-i18n")); });
    $("#lang-toggle").textContent = S.lang === "en" ? "中文" : "EN";
    if (S.region) $("#region-name").textContent = S.region.display_name;
    renderList();
    renderDetail();
    renderRoute();
    if (S.lastStations) {
      if (S.lastStations.mode === "cells") drawStations(S.lastStations); else renderLegend(S.lastStations);
    }
  }

  // ---- start -------------------------------------------------------------------------------------
  async function start() {
    $("#grade-select").addEventListener("change", (e) => {
      S.grade = e.target.value;
      loadView();
      loadList();
      renderDetail();
    });
    $("#sort-select").addEventListener("change", (e) => { S.sort = e.target.value; loadList(); });
    $("#lang-toggle").addEventListener("click", () => { S.lang = S.lang === "zh" ? "en" : "zh"; applyLang(); });
    $("#sheet-close").addEventListener("click", closeSheet);
    $("#station-list").addEventListener("click", (e) => {
      const li = e.target.closest(".station-item");
      if (!li) return;
      const id = Number(li.getAttribute("data-station-id"));
      const s = S.lastList && S.lastList.results.find((r) => r.id === id);
      if (s && map) map.panTo([s.lat, s.lon]);
      openStation(id);
    });
    try {
      S.region = await api("/v1/map/region", { coord: "wgs84" });
    } catch (e) {
      showMessage(t("load_failed") + ": " + e.message, "error");
      return;
    }
    $("#region-name").textContent = S.region.display_name;
    initMap(S.region);
    setMe(L.latLng(S.region.centre.lat, S.region.centre.lon), false);
    loadView();
    loadList();
    if (navigator.geolocation) {
      try {
        navigator.geolocation.getCurrentPosition((pos) => {
          const [w, s, e, n] = S.region.bbox;
          const { latitude, longitude } = pos.coords;
          if (latitude >= s && latitude <= n && longitude >= w && longitude <= e) {
            setMe(L.latLng(latitude, longitude), true);
            map.setView(S.me, Math.max(map.getZoom(), S.region.default_zoom));
          }
        }, () => {}, { timeout: 4000, maximumAge: 60000 });
      } catch (e) { /* no geolocation: the region centre stays my position */ }
    }
    window.fuelApp = { map: map, state: S };
    document.body.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
