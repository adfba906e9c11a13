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
      brand_shell: "壳牌", brand_sinochem: "中化石油", brand_bp: "BP", brand_esso: "埃索", brand_totalenergies: "道达尔",
      brand_repsol: "雷普索尔", brand_cepsa: "Cepsa", brand_galp: "Galp", brand_other: "加油站", yuan: "元",
      location_unknown: "还不知道你的位置：允许定位，或点地图设为你的位置", allow_location: "允许定位",
      location_denied: "定位未开启：点地图设为你的位置", minutes_away: "{m} 分钟", total_cost: "总花费 {c} 元",
      saving: "比最近的省 {s} 元", extra_cost: "比最近的多 {s} 元", price_age: "{age}前更新",
      age_min: "{n} 分钟", age_h: "{n} 小时", age_d: "{n} 天", navigate: "导航", nav_amap: "高德地图",
      nav_tencent: "腾讯地图", nav_apple: "苹果地图", nav_geo: "其他地图", grades_label: "适用",
      err_no_road: "附近没有可以开车到达的道路", err_not_found: "找不到路线", err_busy: "服务繁忙，请稍后再试",
      err_bad_input: "请求有误", err_network: "网络连接失败", cluster: "{n} 座 · {p} 起",
      err_outside: "该位置在服务区域之外", note_OutsideRegion: "该位置在服务区域之外，这里没有加油站",
      note_NoRoadNear: "附近没有道路，无法计算车程：按直线距离排列",
      destination: "目的地",
      fill_here: "在此加油", fill_login: "正在登录（演示）…", fill_pick: "选择油枪", fill_pump: "油机 {label}",
      fill_nozzle: "{n} 号枪 {g}#", fill_no_token: "未贴码", fill_binding: "正在绑定油枪…",
      fill_no_pumps: "该站暂未接入油机", fill_demo_only: "在此加油仅在演示环境可用",
      fill_failed: "无法开始加油", fill_litres: "升", fill_amount: "金额 (元)", fill_pay: "应付 {a} 元",
      fill_via_ws: "实时", fill_via_poll: "轮询", fill_again: "再加一次",
      pump_free: "空闲", pump_in_use: "使用中", pump_in_transaction: "交易中", pump_ready_to_pay: "待付款",
      pump_locked: "锁定", pump_out_of_order: "故障", pump_unknown: "状态未知",
      st_bound: "已绑定：请提起油枪", st_nozzle_up: "油枪已提起", st_authorised: "已授权：可以加油",
      st_fuelling: "加油中…", st_completed: "加油完成", st_locked: "已锁定，待付款", st_paid: "已付款",
      st_expired: "已超时", st_taken_by_cashier: "已转收银台结算", st_cancelled: "已取消", st_review: "待人工核对",
      pay_btn: "微信支付 {a} 元", pay_paying: "正在支付…", pay_failed: "支付失败", pay_done: "已支付 {a} 元 · 订单 {no}",
      pts_balance: "积分 {n}", pts_use: "用 {n} 积分抵 {a} 元", pts_redeemed: "积分抵扣 {n} 积分 · 减 {a} 元",
      inv_person: "个人", inv_org: "单位", inv_name: "发票抬头", inv_tax: "纳税人识别号", inv_ask: "申请电子发票",
      inv_failed: "无法申请发票", inv_status: "电子发票：{s}", inv_number: "发票号码 {n}",
      inv_requested: "已提交", inv_applied: "开具中", inv_issued: "已开具", inv_reversing: "红冲中", inv_reversed: "已红冲",
      inv_failed_status: "开具失败", inv_need_tax: "单位须填写正确的纳税人识别号",
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
      brand_shell: "Shell", brand_sinochem: "Sinochem", brand_bp: "BP", brand_esso: "Esso",
      brand_totalenergies: "TotalEnergies", brand_repsol: "Repsol", brand_cepsa: "Cepsa", brand_galp: "Galp",
      brand_other: "Fuel station", yuan: "CNY",
      location_unknown: "Your location is unknown: allow location access, or tap the map to set it",
      allow_location: "Allow location", location_denied: "Location is off: tap the map to set your position",
      minutes_away: "{m} min", total_cost: "Total {c} CNY", saving: "saves {s} CNY vs nearest",
      extra_cost: "{s} CNY more than nearest", price_age: "updated {age} ago", age_min: "{n} min",
      age_h: "{n} h", age_d: "{n} d", navigate: "Navigate", nav_amap: "Amap", nav_tencent: "Tencent Maps",
      nav_apple: "Apple Maps", nav_geo: "Other map app", grades_label: "for",
      err_no_road: "no drivable road near the point", err_not_found: "no route found",
      err_busy: "the service is busy, try again", err_bad_input: "bad request", err_network: "network error",
      err_outside: "the point is outside the served region",
      note_OutsideRegion: "This place is outside the served region: no stations are listed here",
      note_NoRoadNear: "No road near this place, so no drive times: listed by straight-line distance",
      cluster: "{n} stations · from {p}", destination: "Destination",
      fill_here: "Fill up here", fill_login: "Logging in (demo)…", fill_pick: "Pick a nozzle", fill_pump: "Pump {label}",
      fill_nozzle: "Nozzle {n} {g}#", fill_no_token: "no QR code", fill_binding: "Binding the nozzle…",
      fill_no_pumps: "This station's pumps are not connected", fill_demo_only: "Fill up here is available in the demo only",
      fill_failed: "Could not start", fill_litres: "litres", fill_amount: "amount (CNY)", fill_pay: "To pay {a} CNY",
      fill_via_ws: "live", fill_via_poll: "polling", fill_again: "Fill up again",
      pump_free: "free", pump_in_use: "in use", pump_in_transaction: "in transaction", pump_ready_to_pay: "ready to pay",
      pump_locked: "locked", pump_out_of_order: "out of order", pump_unknown: "status unknown",
      st_bound: "Bound: lift the nozzle", st_nozzle_up: "Nozzle lifted", st_authorised: "Authorised: start fuelling",
      st_fuelling: "Fuelling…", st_completed: "Done", st_locked: "Locked, waiting for payment", st_paid: "Paid",
      st_expired: "Timed out", st_taken_by_cashier: "Settled at the cashier", st_cancelled: "Cancelled",
      st_review: "Needs a check by staff",
      pay_btn: "Pay {a} CNY with WeChat", pay_paying: "Paying…", pay_failed: "Payment failed",
      pay_done: "Paid {a} CNY · order {no}", pts_balance: "Points {n}", pts_use: "Use {n} points for {a} CNY off",
      pts_redeemed: "Redeemed {n} points · {a} CNY off", inv_person: "Individual", inv_org: "Organisation", inv_name: "Invoice title",
      inv_tax: "Taxpayer ID", inv_ask: "Request an e-invoice", inv_failed: "Could not request the invoice",
      inv_status: "E-invoice: {s}", inv_number: "Invoice number {n}", inv_requested: "requested", inv_applied: "being issued",
      inv_issued: "issued", inv_reversing: "being reversed", inv_reversed: "reversed", inv_failed_status: "refused",
      inv_need_tax: "an organisation needs its valid taxpayer ID",
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
  const CLUSTER_PX = { w: 58, h: 26 }; // a price callout's box: closer markers are merged
  // the route's colour from each piece's speed / free-flow speed
  function trafficLevel(seg) {
    const f = seg.congestion;
    if (f == null) return seg.level || "free";
    if (f <= 0) return "closed";
    return f >= 0.9 ? "free" : f >= 0.6 ? "slow" : "congested";
  }
  const LIST_LIMIT = 30;

  const S = {
    lang: "zh", grade: "92", sort: "distance", region: null, me: null, selected: null,
    viewToken: 0, listToken: 0, sheetToken: 0, lastStations: null, lastList: null, lastDetail: null,
    lastRoute: null, messageTimer: null, roadsKey: null, stationsKey: null, roadsFetched: 0,
    stationPos: new Map(), routeError: null, locationState: "unknown",
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
  // The service's display names (name, brand or operator, street) when it sends them, else the mapped name.
  function stationName(s) {
    const zh = (s.display_name || s.name || "").trim(), en = (s.display_name_en || s.name_en || "").trim();
    return (S.lang === "en" ? en || zh : zh || en) || brandName(s.brand);
  }
  function brandName(brand) { return I18N.zh["brand_" + brand] ? t("brand_" + brand) : t("brand_other"); }
  const ICON_BRANDS = new Set(["sinopec", "petrochina", "cnooc", "shell"]); // api/static/icons
  function iconFor(brand) { return "/static/icons/" + (ICON_BRANDS.has(brand) ? brand : "other") + ".svg"; }
  function money(x) { return x == null ? "--" : Number(x).toFixed(2); }

  class ApiError extends Error {
    constructor(status, message, param, code) { super(message); this.status = status; this.param = param; this.code = code; }
  }
  // An API error in the chosen language (the API's own message is English: shown as is in English only).
  function errorText(e) {
    if (S.lang === "en" && e.message) return e.message;
    if (e.status === 0) return t("err_network");
    if (e.status === 404) return /road|snap/i.test(e.code || e.message || "") ? t("err_no_road") : t("err_not_found");
    if (e.status === 429 || e.status >= 500) return t("err_busy");
    if (e.status === 422 && e.code === "OutsideRegion") return t("err_outside");
    if (e.status === 422 && /road|snap/i.test((e.code || "") + (e.message || ""))) return t("err_no_road");
    return t("err_bad_input");
  }
  // opts: {method, body (sent as JSON), auth (a user's session token), headers}
  async function api(path, params, opts) {
    const q = params ? "?" + new URLSearchParams(params).toString() : "";
    const o = opts || {};
    const headers = { Accept: "application/json" };
    if (o.auth) headers.Authorization = "Bearer " + o.auth;
    if (o.headers) Object.assign(headers, o.headers);
    if (o.body !== undefined) headers["Content-Type"] = "application/json";
    let r;
    try {
      r = await fetch(path + q, {
        method: o.method || "GET", headers: headers, body: o.body === undefined ? undefined : JSON.stringify(o.body),
      });
    } catch (e) {
      throw new ApiError(0, String(e && e.message ? e.message : e));
    }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const err = body && body.error ? body.error : {};
      throw new ApiError(r.status, err.message || r.status + " " + r.statusText, err.param, err.code);
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
  let map, roadsLayer, stationsLayer, heatLayer, outlineLayer, routeLayer, meMarker, legend, destMarker;
  let roadsRenderer, heatRenderer, routeRenderer;
  const markerById = new Map();

  function initMap(region) {
    map = L.map("map", { zoomControl: true, attributionControl: true, minZoom: 5, maxZoom: 19, zoomSnap: 1 });
    map.createPane("roads").style.zIndex = 300;
    map.createPane("heat").style.zIndex = 350;
    map.createPane("outline").style.zIndex = 360;
    map.createPane("route").style.zIndex = 450;
    map.createPane("destination").style.zIndex = 660; // above the markers and the heatmap, at every zoom
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
      S.locationState = "set";
      setMe(e.latlng, true);
      renderLocation();
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

  // Without a position the page says so (no silent region centre): allow location, or tap the map.
  function renderLocation() {
    const box = $("#location-state");
    if (!box) return;
    const known = S.me != null;
    box.hidden = known;
    $("#my-position-note").hidden = !known;
    document.body.setAttribute("data-location", known ? "known" : S.locationState);
    if (!known) {
      $("#location-text").textContent = t(S.locationState === "denied" ? "location_denied" : "location_unknown");
      $("#allow-location").textContent = t("allow_location");
      $("#allow-location").hidden = !navigator.geolocation;
    }
  }

  function askLocation() {
    if (!navigator.geolocation) return;
    try {
      navigator.geolocation.getCurrentPosition((pos) => {
        const { latitude, longitude } = pos.coords;
        S.locationState = "set";
        setMe(L.latLng(latitude, longitude), true);
        renderLocation();
        const [w, s, e, n] = S.region.bbox;
        if (latitude >= s && latitude <= n && longitude >= w && longitude <= e) {
          map.setView(S.me, Math.max(map.getZoom(), S.region.default_zoom));
        }
      }, () => { if (!S.me) { S.locationState = "denied"; renderLocation(); } }, { timeout: 8000, maximumAge: 60000 });
    } catch (e) { S.locationState = "denied"; renderLocation(); }
  }

  function viewBbox() {
    const b = map.getBounds().pad(0.1);
    const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
    return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -85, 85), clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -85, 85)]
      .map((v) => v.toFixed(6)).join(",");
  }

  // Each layer is fetched once per view: the roads when the view (bbox, zoom) changes, the stations when
  // the view or the grade does; a repeated event for the same view fetches nothing.
  async function loadView() {
    const params = { bbox: viewBbox(), zoom: String(map.getZoom()), coord: "wgs84" };
    const roadsKey = params.bbox + "/" + params.zoom;
    const stationsKey = roadsKey + "/" + S.grade;
    const wantRoads = roadsKey !== S.roadsKey, wantStations = stationsKey !== S.stationsKey;
    if (!wantRoads && !wantStations) return;
    const token = ++S.viewToken;
    S.roadsKey = roadsKey;
    S.stationsKey = stationsKey;
    $("#loading").hidden = false;
    const jobs = [];
    if (wantRoads) {
      jobs.push(api("/v1/map/roads", params).then((fc) => { if (S.roadsKey === roadsKey) drawRoads(fc); },
        (e) => { if (S.roadsKey === roadsKey) S.roadsKey = null; throw e; }));
    }
    if (wantStations) {
      jobs.push(api("/v1/map/stations", { ...params, grade: S.grade })
        .then((fc) => { if (S.stationsKey === stationsKey) drawStations(fc); },
          (e) => { if (S.stationsKey === stationsKey) S.stationsKey = null; throw e; }));
    }
    const results = await Promise.allSettled(jobs);
    if (token !== S.viewToken) return;
    $("#loading").hidden = true;
    const failed = results.find((r) => r.status === "rejected");
    if (failed) showMessage(t("load_failed") + ": " + errorText(failed.reason), "error");
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
    S.roadsFetched = (S.roadsFetched || 0) + 1;
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

  // Markers whose price callouts would overlap on screen are merged into one cluster (count and lowest
  // price); tapping a cluster zooms in on it. The selected station is never merged and is drawn in front.
  function clusterFeatures(features) {
    const groups = [];
    const pts = features.map((f) => map.latLngToLayerPoint([f.geometry.coordinates[1], f.geometry.coordinates[0]]));
    const order = features.map((f, i) => i).sort((a, b) => {
      const pa = features[a].properties.effective_price, pb = features[b].properties.effective_price;
      return (pa == null) - (pb == null) || (pa || 0) - (pb || 0) || features[a].properties.id - features[b].properties.id;
    });
    for (const i of order) {
      const sel = features[i].properties.id === S.selected;
      const g = sel ? null : groups.find((x) => !x.selected && Math.abs(x.pt.x - pts[i].x) < CLUSTER_PX.w && Math.abs(x.pt.y - pts[i].y) < CLUSTER_PX.h);
      if (g) g.members.push(features[i]); else groups.push({ pt: pts[i], members: [features[i]], selected: sel });
    }
    return groups;
  }

  function drawMarkers(fc) {
    document.getElementById("legend").hidden = true;
    const prices = fc.features.map((f) => f.properties.effective_price).filter((p) => p != null);
    const cheapest = prices.length ? Math.min.apply(null, prices) : null;
    let clusters = 0;
    for (const group of clusterFeatures(fc.features)) {
      if (group.members.length > 1) { drawCluster(group); clusters += 1; continue; }
      const f = group.members[0];
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
        riseOnHover: true, title: stationName(p), zIndexOffset: S.selected === p.id ? 5000 : 0,
      });
      m.on("click", (e) => { L.DomEvent.stop(e); openStation(p.id); });
      m.addTo(stationsLayer);
      markerById.set(p.id, m);
      S.stationPos.set(p.id, L.latLng(lat, lon));
    }
    $("#map").setAttribute("data-clusters", String(clusters));
  }

  function drawCluster(group) {
    const ll = group.members.map((f) => L.latLng(f.geometry.coordinates[1], f.geometry.coordinates[0]));
    const prices = group.members.map((f) => f.properties.effective_price).filter((p) => p != null);
    const low = prices.length ? Math.min.apply(null, prices) : null;
    const ids = group.members.map((f) => f.properties.id);
    for (const f of group.members) S.stationPos.set(f.properties.id, L.latLng(f.geometry.coordinates[1], f.geometry.coordinates[0]));
    const html = '<div class="station-cluster" data-test="station-cluster" data-count="' + ids.length + '" data-station-ids="' + ids.join(",") + '">'
      + '<span class="cluster-count">' + ids.length + '</span><span class="price-label">' + esc(low == null ? "--" : money(low)) + "</span></div>";
    const m = L.marker(ll[0], {
      icon: L.divIcon({ className: "station-marker-wrap", html, iconSize: [72, 30], iconAnchor: [36, 30] }),
      title: t("cluster", { n: ids.length, p: money(low) }),
    });
    m.on("click", (e) => {
      L.DomEvent.stop(e);
      const b = L.latLngBounds(ll);
      if (map.getZoom() >= map.getMaxZoom() - 1 || b.getNorthEast().equals(b.getSouthWest())) openStation(ids[0]);
      else map.fitBounds(b.pad(0.5), { maxZoom: Math.min(map.getMaxZoom(), map.getZoom() + 3) });
    });
    m.addTo(stationsLayer);
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
    if (!S.me) { renderList(); return; }
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
      showMessage(t("load_failed") + ": " + errorText(e), "error");
    }
  }

  function ageText(seconds) {
    if (seconds == null) return "";
    const m = Math.max(1, Math.round(seconds / 60));
    const age = m < 60 ? t("age_min", { n: m }) : m < 2880 ? t("age_h", { n: Math.round(m / 60) }) : t("age_d", { n: Math.round(m / 1440) });
    return t("price_age", { age: age });
  }

  function distanceText(m) {
    return m == null ? "" : m >= 1000 ? (m / 1000).toFixed(1) + " " + t("km") : Math.round(m) + " m";
  }

  // What the chosen sort is about: drive minutes for eta, total cost and saving for total_cost.
  function sortFigure(s) {
    if (S.sort === "eta" && s.eta_s != null) {
      return '<span class="figure" data-test="eta-minutes">' + esc(t("minutes_away", { m: Math.max(1, Math.round(s.eta_s / 60)) })) + "</span>";
    }
    if (S.sort === "total_cost" && s.cost && s.cost.total != null) {
      const sv = s.cost.saving_vs_nearest;
      const saving = sv == null ? "" : sv >= 0.005 ? t("saving", { s: money(sv) }) : sv <= -0.005 ? t("extra_cost", { s: money(-sv) }) : "";
      return '<span class="figure" data-test="total-cost">' + esc(t("total_cost", { c: money(s.cost.total) })) + "</span>"
        + (saving ? '<span class="figure saving" data-test="saving">' + esc(saving) + "</span>" : "");
    }
    return "";
  }

  function renderList() {
    const body = S.lastList;
    const ul = $("#station-list");
    if (!S.me) {
      $("#list-count").textContent = "";
      ul.innerHTML = '<li class="empty" data-test="list-location-unknown">' + esc(t("location_unknown")) + "</li>";
      return;
    }
    if (!body) return;
    $("#list-count").textContent = body.count + " " + t("stations");
    // the service's note (outside the region; no road near for the ETA sort), in the chosen language
    const note = body.note_code ? '<li class="note" data-test="list-note" data-code="' + esc(body.note_code) + '">'
      + esc(t("note_" + body.note_code)) + "</li>" : "";
    if (!body.results.length) {
      ul.innerHTML = note || '<li class="empty">' + esc(body.note || t("no_stations")) + "</li>";
      return;
    }
    ul.innerHTML = note + body.results.map((s) => {
      const g = s.grades && s.grades[S.grade];
      const eff = g && g.effective_price, list = g && g.list_price;
      const promo = g && g.promotions_applied && g.promotions_applied.length;
      const dist = distanceText(s.distance_m);
      const status = s.status !== "open" ? '<span class="badge closed">' + esc(t(s.status)) + "</span>" : "";
      const age = g && g.price_age_s != null ? '<span class="age" data-test="price-age">' + esc(ageText(g.price_age_s)) + "</span>" : "";
      return '<li class="station-item' + (S.selected === s.id ? " selected" : "") + '" data-test="station-item" data-station-id="' + s.id + '">'
        + '<img class="brand-icon" src="' + iconFor(s.brand) + '" alt="">'
        + '<div class="info"><div class="name">' + esc(stationName(s)) + "</div>"
        + '<div class="meta">' + sortFigure(s) + esc(dist) + (promo ? '<span class="badge">' + esc(t("promo_badge")) + "</span>" : "") + status + "</div>"
        + (age ? '<div class="meta">' + age + "</div>" : "") + "</div>"
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
    if (S.lastStations && S.lastStations.mode === "markers") drawStations(S.lastStations); // the selected in front
    $("#station-detail").innerHTML = '<div class="addr">' + esc(t("loading")) + "</div>";
    if (FILL.station !== id) fillReset(id);
    loadRoute(id);
    loadGcj(id);
    try {
      const body = await api("/v1/stations/" + id, { coord: "wgs84" });
      if (token !== S.sheetToken) return;
      S.lastDetail = body.station;
      S.stationPos.set(id, L.latLng(body.station.lat, body.station.lon));
      renderDetail();
    } catch (e) {
      if (token !== S.sheetToken) return;
      $("#station-detail").innerHTML = '<div class="addr">' + esc(t("load_failed") + ": " + errorText(e)) + "</div>";
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
    // one line per promotion, with the grades it applies to (an order-level offer is not repeated per grade)
    const byPromo = new Map();
    for (const g of Object.keys(s.grades)) {
      for (const a of s.grades[g].promotions_applied || []) {
        if (!byPromo.has(a.id)) byPromo.set(a.id, { a: a, grades: [], savings: new Set() });
        const e = byPromo.get(a.id);
        e.grades.push(g + "#");
        e.savings.add(money(a.saving));
      }
    }
    const promos = [...byPromo.values()].map(({ a, grades, savings }) => {
      const title = S.lang === "en" ? a.title_en || a.title : a.title || a.title_en;
      const saving = savings.size === 1 ? " (−" + [...savings][0] + " " + t("per_litre") + ")" : "";
      return '<li class="promo" data-test="promotion" data-promotion-id="' + esc(a.id) + '">' + esc(title + saving)
        + '<small class="promo-grades">' + esc(t("grades_label") + " " + grades.join(" ")) + "</small></li>";
    });
    const age = s.grades[S.grade] && s.grades[S.grade].price_age_s;
    const status = s.status !== "open" ? '<span class="badge closed">' + esc(t(s.status)) + "</span>" : s.open_now ? '<span class="badge">' + esc(t("open")) + "</span>" : "";
    $("#station-detail").innerHTML = '<h2 data-test="station-name"><img src="' + iconFor(s.brand) + '" alt="">' + esc(stationName(s)) + status + "</h2>"
      + '<div class="addr">' + esc(brandName(s.brand)) + (s.address ? " · " + esc(s.address) : "") + (s.opening_hours ? " · " + esc(s.opening_hours) : "") + "</div>"
      + '<table class="prices" data-test="prices"><tr><th>' + esc(t("grade_col")) + "</th><th>" + esc(t("list_price")) + "</th><th>" + esc(t("effective_price")) + "</th></tr>" + (rows || "<tr><td colspan=3>" + esc(t("no_price")) + "</td></tr>") + "</table>"
      + (age != null ? '<div class="addr" data-test="detail-price-age">' + esc(S.grade + "# " + ageText(age)) + "</div>" : "")
      + '<div class="addr">' + esc(t("promotions")) + '</div><ul class="promos">' + (promos.join("") || '<li class="none">' + esc(t("no_promotions")) + "</li>") + "</ul>"
      + navLinks(s);
  }

  // Hand-off to the phone's map app: Amap and Tencent take GCJ-02 (from the API: S.detailGcj), Apple
  // Maps converts WGS-84 itself, a geo: URL is WGS-84 (RFC 5870).
  function navLinks(s) {
    const name = encodeURIComponent(stationName(s));
    const w = { lat: s.lat, lon: s.lon };
    const g = S.detailGcj && S.detailGcj.id === s.id ? S.detailGcj : null;
    const f = (x) => Number(x).toFixed(6);
    const links = [
      ["apple", "https://maps.apple.com/?daddr=" + f(w.lat) + "," + f(w.lon) + "&dirflg=d&q=" + name],
      ["geo", "geo:" + f(w.lat) + "," + f(w.lon) + "?q=" + f(w.lat) + "," + f(w.lon) + "(" + name + ")"],
    ];
    if (g) {
      links.unshift(
        ["amap", "https://uri.amap.com/navigation?to=" + f(g.lon) + "," + f(g.lat) + "," + name + "&mode=car&coordinate=gaode&callnative=1"],
        ["tencent", "https://apis.map.qq.com/uri/v1/routeplan?type=drive&to=" + name + "&tocoord=" + f(g.lat) + "," + f(g.lon) + "&referer=lijiang-fuel"]);
    }
    return '<div class="navigate" data-test="navigate"><span class="nav-title">' + esc(t("navigate")) + "</span>"
      + links.map(([k, href]) => '<a class="nav-link" data-test="nav-' + k + '" href="' + esc(href) + '" target="_blank" rel="noopener">' + esc(t("nav_" + k)) + "</a>").join("")
      + "</div>";
  }

  async function loadGcj(id) {
    try {
      const body = await api("/v1/stations/" + id, { coord: "gcj02" });
      if (S.selected !== id) return;
      S.detailGcj = { id: id, lat: body.station.lat, lon: body.station.lon };
      renderDetail();
    } catch (e) { /* the Amap and Tencent links need GCJ-02: without it only Apple and geo: are offered */ }
  }

  async function loadRoute(id) {
    let to = S.stationPos.get(id) || null;
    if (!S.me) {
      routeLayer.clearLayers();
      $("#route-status").textContent = t("location_unknown");
      return;
    }
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
        geometries: "segments",
      });
      if (token !== S.sheetToken || S.selected !== id) return;
      S.lastRoute = route;
      S.routeError = null;
      drawRoute(route, to);
      renderRoute();
    } catch (e) {
      if (token !== S.sheetToken) return;
      S.lastRoute = null;
      $("#route-status").textContent = "";
      S.routeError = e;
      $("#route-error").textContent = t("route_failed") + ": " + errorText(e);
      $("#route-error").hidden = false;
    }
  }

  function renderRoute() {
    if (S.routeError && !$("#route-error").hidden) {
      $("#route-error").textContent = t("route_failed") + ": " + errorText(S.routeError);
    }
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

  function drawRoute(route, to) {
    routeLayer.clearLayers();
    const segs = route.segments && route.segments.length ? route.segments : [{ level: "free", coordinates: route.geometry.coordinates }];
    const levels = segs.map(trafficLevel);
    const all = [];
    for (const s of segs) {
      const ll = s.coordinates.map((c) => [c[1], c[0]]);
      all.push(...ll);
      L.polyline(ll, { renderer: routeRenderer, pane: "route", color: "#1646a8", weight: 11, opacity: 0.9, className: "route-casing", interactive: false }).addTo(routeLayer);
    }
    segs.forEach((s, i) => {
      const ll = s.coordinates.map((c) => [c[1], c[0]]);
      L.polyline(ll, {
        renderer: routeRenderer, pane: "route", color: LEVEL_COLOURS[levels[i]] || "#1e63d6", weight: 6, opacity: 1,
        className: "route-segment route-" + levels[i], interactive: false,
      }).addTo(routeLayer);
    });
    if (to) { // the destination pin, above the heatmap and the markers at every zoom
      L.marker(to, {
        pane: "destination", interactive: false, keyboard: false, title: t("destination"),
        icon: L.divIcon({ className: "destination-wrap", html: '<div class="destination-pin" data-test="destination-pin"></div>', iconSize: [26, 34], iconAnchor: [13, 34] }),
      }).addTo(routeLayer);
    }
    const el = document.getElementById("map");
    el.setAttribute("data-route-segments", String(segs.length));
    el.setAttribute("data-route-levels", [...new Set(levels)].sort().join(","));
    // The view frames the route (animated); `data-route-framed` says when it has come to rest, before
    // which Leaflet ignores another zoom.
    el.removeAttribute("data-route-framed");
    if (all.length) {
      const b = L.latLngBounds(all).extend(S.me);
      const mapH = el.clientHeight;
      map.once("moveend", () => { if (S.lastRoute === route) el.setAttribute("data-route-framed", "1"); });
      map.fitBounds(b, { paddingTopLeft: [30, 30], paddingBottomRight: [30, Math.round(mapH * 0.55)], maxZoom: 16 });
    } else {
      el.setAttribute("data-route-framed", "1");
    }
  }

  // ---- at the station: fill up (demo region) --------------------------------------------------------
  // 在此加油: log in (demo: the service asks the fake WeChat for a code), pick a pump and nozzle (the token
  // its QR code would hold, listed in development only), bind a fuelling session, then follow it live
  // over the WebSocket (the events endpoint polled when the socket cannot be used) to the completed sale.
  const FILL = { station: null, user: null, phase: "idle", pumps: null, session: null, via: null, error: null,
    ws: null, poll: null, gen: 0 };

  function fillStop() {
    FILL.gen++;
    if (FILL.ws) { try { FILL.ws.close(); } catch (e) { /* already closed */ } }
    FILL.ws = null;
    clearTimeout(FILL.poll);
    FILL.poll = null;
  }
  function fillReset(stationId) {
    fillStop();
    Object.assign(FILL, { station: stationId, phase: "idle", pumps: null, session: null, via: null, error: null,
      order: null, paying: false, payKey: null, invoice: null, invKey: null, invForm: null, points: null, redeem: false });
    renderFill();
  }
  function fillPumpLabel(no) {
    const p = (FILL.pumps || []).find((q) => q.pump_no === no);
    return p ? p.label : String(no);
  }
  function fenText(fen) { return fen == null ? "--" : (fen / 100).toFixed(2); }

  function renderFill() {
    const el = $("#fillup");
    if (!el) return;
    el.setAttribute("data-phase", FILL.phase);
    let html = "";
    if (FILL.phase === "idle") {
      html = '<button id="fillup-start" type="button" data-test="fillup-start">' + esc(t("fill_here")) + "</button>";
    } else if (FILL.phase === "login" || FILL.phase === "binding") {
      html = '<div class="fill-status">' + esc(t(FILL.phase === "login" ? "fill_login" : "fill_binding")) + "</div>";
    } else if (FILL.phase === "pick") {
      html = '<div class="fill-title">' + esc(t("fill_pick")) + "</div>";
      if (!FILL.pumps || !FILL.pumps.length) html += '<div class="fill-status">' + esc(t("fill_no_pumps")) + "</div>";
      for (const p of FILL.pumps || []) {
        html += '<div class="fill-pump" data-test="fill-pump" data-pump="' + p.pump_no + '"><span class="pump-name">'
          + esc(t("fill_pump", { label: p.label })) + '</span><span class="pump-status ' + esc(p.status) + '">'
          + esc(t("pump_" + p.status.replace(/-/g, "_"))) + "</span><div class=\"nozzles\">";
        for (const n of p.nozzles) {
          const ok = n.active && n.token;
          html += '<button type="button" class="fill-nozzle" data-test="fill-nozzle" data-pump="' + p.pump_no
            + '" data-nozzle="' + n.nozzle_no + '" data-token="' + esc(n.token || "") + '"' + (ok ? "" : " disabled") + ">"
            + esc(t("fill_nozzle", { n: n.nozzle_no, g: n.grade })) + (n.token ? "" : " · " + esc(t("fill_no_token"))) + "</button>";
        }
        html += "</div></div>";
      }
    } else if (FILL.phase === "live" && FILL.session) {
      const x = FILL.session;
      const final = x.final_amount_fen != null;
      html = '<div class="fill-live" data-test="fill-live" data-state="' + esc(x.state) + '" data-session="' + x.id + '">'
        + '<div class="fill-head">' + esc(t("fill_pump", { label: fillPumpLabel(x.pump_no) })) + " · "
        + esc(t("fill_nozzle", { n: x.nozzle_no, g: x.grade }))
        + ' <small class="fill-via" data-test="fill-via">' + esc(FILL.via ? t("fill_via_" + FILL.via) : "") + "</small></div>"
        + '<div class="fill-state" data-test="fill-state">' + esc(t("st_" + x.state)) + "</div>"
        + '<div class="fill-figures"><div><span data-test="fill-litres">' + (x.volume_ml / 1000).toFixed(2)
        + "</span><small>" + esc(t("fill_litres")) + '</small></div><div><span data-test="fill-amount">'
        + fenText(final ? x.final_amount_fen : x.amount_fen) + "</span><small>" + esc(t("fill_amount")) + "</small></div></div>"
        + (final ? '<div class="fill-pay" data-test="fill-pay">' + esc(t("fill_pay", { a: fenText(fillDue(x)) })) + "</div>" : "")
        + pointsHtml(x)
        + payHtml(x)
        + (x.terminal ? '<button id="fillup-again" type="button">' + esc(t("fill_again")) + "</button>" : "")
        + "</div>";
    }
    if (FILL.error) html += '<div class="fill-error" data-test="fill-error">' + esc(FILL.error) + "</div>";
    el.innerHTML = html;
  }

  // ---- paying the completed sale (the fake WeChat Pay confirms in development) and its e-invoice ------
  function fillPayable(x) { return x.final_amount_fen != null && (x.state === "completed" || x.state === "locked"); }

  // Points at pay: the balance (GET /v1/me/points) and a toggle redeeming the most whole units that leave
  // at least 1 fen to pay; the amount shown and the pay request (redeem_points) follow the toggle.
  const MAX_REDEEM_POINTS = 100000; // the pay endpoints' limit on redeem_points
  function fillRedemption(x) {
    const p = FILL.points;
    if (!p || !p.unit_points || !p.unit_fen || !fillPayable(x)) return null;
    const units = Math.min(Math.floor(p.redeemable / p.unit_points), Math.floor((x.final_amount_fen - 1) / p.unit_fen),
      Math.floor(MAX_REDEEM_POINTS / p.unit_points));
    return units > 0 ? { points: units * p.unit_points, fen: units * p.unit_fen } : null;
  }
  function fillDue(x) {
    if (x.state === "paid" && FILL.order) return FILL.order.amount_fen; // what the order charged, points off
    const r = FILL.redeem ? fillRedemption(x) : null;
    return x.final_amount_fen - (r ? r.fen : 0);
  }
  async function fillLoadPoints() {
    const gen = FILL.gen;
    try {
      const p = await api("/v1/me/points", { limit: 1 }, { auth: FILL.user.token });
      if (gen !== FILL.gen) return;
      FILL.points = p;
    } catch (e) {
      if (gen === FILL.gen) FILL.points = { failed: true }; // paying without points still works
    }
    if (gen === FILL.gen) renderFill();
  }
  function pointsHtml(x) {
    if (!fillPayable(x) || !FILL.user) return "";
    if (!FILL.points) { FILL.points = { loading: true }; setTimeout(fillLoadPoints, 0); return ""; }
    const p = FILL.points;
    if (p.balance == null) return "";
    const r = fillRedemption(x);
    return '<div class="fill-points" data-test="fill-points"><span data-test="fill-points-balance">'
      + esc(t("pts_balance", { n: p.balance })) + "</span>"
      + (r ? '<label class="fill-redeem"><input type="checkbox" id="fill-redeem" data-test="fill-redeem"'
        + (FILL.redeem ? " checked" : "") + (FILL.paying ? " disabled" : "") + "> <span data-test=\"fill-redeem-label\">"
        + esc(t("pts_use", { n: r.points, a: fenText(r.fen) })) + "</span></label>" : "")
      + "</div>";
  }
  function payHtml(x) {
    if (fillPayable(x)) {
      return '<button id="fill-paybtn" type="button" data-test="fill-paybtn"' + (FILL.paying ? " disabled" : "") + ">"
        + esc(FILL.paying ? t("pay_paying") : t("pay_btn", { a: fenText(fillDue(x)) })) + "</button>";
    }
    const o = FILL.order;
    if (x.state !== "paid" || !o) return "";
    let h = '<div class="fill-paid" data-test="fill-paid">' + esc(t("pay_done", { a: fenText(o.amount_fen), no: o.out_trade_no }))
      + (o.redeemed_points ? '<br><small data-test="fill-paid-points">'
        + esc(t("pts_redeemed", { n: o.redeemed_points, a: fenText(o.redemption_fen) })) + "</small>" : "")
      + "</div>";
    const v = FILL.invoice;
    if (v) {
      h += '<div class="fill-invoice" data-test="fill-invoice" data-status="' + esc(v.status) + '">'
        + esc(t("inv_status", { s: t(v.status === "failed" ? "inv_failed_status" : "inv_" + v.status) }))
        + (v.fapiao_number ? '<br><small data-test="fill-invoice-number">' + esc(t("inv_number", { n: v.fapiao_number }))
          + "</small>" : "") + "</div>";
    } else {
      const f = FILL.invForm || { type: "INDIVIDUAL", name: "", tax: "" }; // kept across a refused request
      const opt = (v, k) => '<option value="' + v + '"' + (f.type === v ? " selected" : "") + ">" + esc(t(k)) + "</option>";
      h += '<div class="fill-invoice-form" data-test="fill-invoice-form"><select id="inv-type" data-test="inv-type">'
        + opt("INDIVIDUAL", "inv_person") + opt("ORGANIZATION", "inv_org")
        + '</select><input id="inv-name" data-test="inv-name" maxlength="100" value="' + esc(f.name) + '" placeholder="'
        + esc(t("inv_name")) + '"><input id="inv-tax" data-test="inv-tax" maxlength="20" value="' + esc(f.tax)
        + '" placeholder="' + esc(t("inv_tax")) + '">'
        + '<button id="inv-ask" type="button" data-test="inv-ask">' + esc(t("inv_ask")) + "</button></div>";
    }
    return h;
  }
  function newKey() {
    return window.crypto && crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(36).slice(2);
  }
  async function fillPayNow() {
    const gen = FILL.gen, x = FILL.session, auth = FILL.user.token;
    FILL.paying = true;
    FILL.error = null;
    renderFill();
    try {
      FILL.payKey = FILL.payKey || newKey(); // a retried tap is the same payment
      const r = FILL.redeem ? fillRedemption(x) : null;
      const order = await api("/v1/fuelling/sessions/" + x.id + "/pay", r ? { redeem_points: r.points } : null,
        { method: "POST", auth: auth, headers: { "Idempotency-Key": FILL.payKey } });
      if (gen !== FILL.gen) return;
      FILL.order = order;
      // wx.requestPayment(order.request_payment) on a phone; the fake WeChat Pay in development
      await api("/v1/payments/demo/confirm", null, { method: "POST", body: order.request_payment, auth: auth });
    } catch (e) {
      if (gen === FILL.gen) FILL.error = t("pay_failed") + ": " + errorText(e);
    }
    if (gen !== FILL.gen) return;
    FILL.paying = false;
    renderFill(); // the paid state arrives as the session's next event
  }
  async function fillInvoice() {
    const gen = FILL.gen, no = FILL.order.out_trade_no, auth = FILL.user.token;
    const body = { type: $("#inv-type").value, name: $("#inv-name").value.trim() };
    const tax = $("#inv-tax").value.trim();
    if (tax) body.taxpayer_id = tax;
    FILL.invForm = { type: body.type, name: body.name, tax: tax };
    FILL.error = null;
    try {
      FILL.invKey = FILL.invKey || newKey();
      FILL.invoice = await api("/v1/payments/" + no + "/invoice", null,
        { method: "POST", body: body, auth: auth, headers: { "Idempotency-Key": FILL.invKey } });
    } catch (e) {
      if (gen !== FILL.gen) return;
      FILL.invKey = null; // corrected input is a new request
      FILL.error = t("inv_failed") + ": " + (e.status === 422 && /taxpayer/.test(e.message) ? t("inv_need_tax") : errorText(e));
      renderFill();
      return;
    }
    if (gen !== FILL.gen) return;
    renderFill();
    const follow = async () => {
      if (gen !== FILL.gen || !FILL.invoice || ["issued", "reversed", "failed"].includes(FILL.invoice.status)) return;
      try { FILL.invoice = await api("/v1/payments/" + no + "/invoice", null, { auth: auth }); } catch (e) { /* next round */ }
      if (gen !== FILL.gen) return;
      renderFill();
      setTimeout(follow, 1000);
    };
    setTimeout(follow, 1000);
  }

  async function fillStart() {
    const gen = FILL.gen, station = FILL.station;
    FILL.error = null;
    try {
      if (!FILL.user || Date.parse(FILL.user.expires_at) < Date.now() + 60000) {
        FILL.phase = "login";
        renderFill();
        FILL.user = await api("/v1/auth/demo", null, { method: "POST", body: {} });
        sessionStorage.setItem("fuel.user_token", FILL.user.token); // 我的 (me.js) shows the same driver
      }
      const body = await api("/v1/stations/" + station + "/pumps", null, { auth: FILL.user.token });
      if (gen !== FILL.gen) return;
      FILL.pumps = body.pumps;
      FILL.phase = "pick";
    } catch (e) {
      if (gen !== FILL.gen) return;
      FILL.phase = "idle";
      FILL.error = e.status === 404 && !FILL.user ? t("fill_demo_only") : t("fill_failed") + ": " + errorText(e);
    }
    renderFill();
  }

  async function fillBind(token) {
    const gen = FILL.gen;
    FILL.phase = "binding";
    FILL.error = null;
    renderFill();
    try {
      const session = await api("/v1/fuelling/sessions", null, {
        method: "POST", body: { nozzle_token: token }, auth: FILL.user.token,
      });
      if (gen !== FILL.gen) return;
      FILL.session = session;
      FILL.phase = "live";
      renderFill();
      fillFollow();
    } catch (e) {
      if (gen !== FILL.gen) return;
      FILL.phase = "pick";
      FILL.error = t("fill_failed") + ": " + errorText(e);
      renderFill();
    }
  }

  // An event's figures and state onto the session shown (events come in seq order, each once).
  const TERMINAL = ["paid", "expired", "taken_by_cashier", "cancelled", "review"]; // fuelling/_session.py
  function fillApply(ev) {
    const x = FILL.session;
    if (!x || ev.seq <= x.last_seq) return;
    Object.assign(x, { state: ev.state, volume_ml: ev.volume_ml, amount_fen: ev.amount_fen, last_seq: ev.seq });
    if (ev.final_amount_fen != null) x.final_amount_fen = ev.final_amount_fen;
    if (ev.sale) x.sale = ev.sale;
    x.terminal = TERMINAL.includes(ev.state);
  }

  function fillFollow() {
    const gen = FILL.gen, x = FILL.session;
    let ws;
    try {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(scheme + location.host + "/v1/fuelling/sessions/" + x.id + "/live?token="
        + encodeURIComponent(FILL.user.token) + "&after_seq=" + x.last_seq);
    } catch (e) {
      fillPoll(gen);
      return;
    }
    FILL.ws = ws;
    ws.onopen = () => { if (gen === FILL.gen) { FILL.via = "ws"; renderFill(); } };
    ws.onmessage = (m) => {
      if (gen !== FILL.gen) return;
      const msg = JSON.parse(m.data);
      if (msg.type === "session") {
        const keep = FILL.session.last_seq;
        FILL.session = msg.session;
        if (msg.session.last_seq < keep) FILL.session.last_seq = keep;
      } else if (msg.type === "event") fillApply(msg.event);
      renderFill();
    };
    ws.onclose = (ev) => {
      if (gen !== FILL.gen) return;
      FILL.ws = null;
      // closed after a terminal state's event (1000), or refused for good: nothing more to follow
      if (ev.code === 1000 || ev.code === 4401 || ev.code === 4403 || ev.code === 4404) return;
      fillPoll(gen);
    };
  }

  // The polling fallback: the session's events after the last seq shown, every second until it ends.
  async function fillPoll(gen) {
    if (gen !== FILL.gen || !FILL.session) return;
    FILL.via = "poll";
    try {
      let more = true;
      while (more) {
        const page = await api("/v1/fuelling/sessions/" + FILL.session.id + "/events",
          { after_seq: FILL.session.last_seq }, { auth: FILL.user.token });
        if (gen !== FILL.gen) return;
        page.events.forEach(fillApply);
        more = page.more;
      }
      renderFill();
    } catch (e) {
      if (gen !== FILL.gen) return;
      FILL.error = errorText(e);
      renderFill();
    }
    if (!FILL.session.terminal) FILL.poll = setTimeout(() => fillPoll(gen), 1000);
  }

  function closeSheet() {
    S.selected = null;
    ++S.sheetToken;
    $("#station-sheet").hidden = true;
    fillReset(null);
    routeLayer.clearLayers();
    document.getElementById("map").removeAttribute("data-route-framed");
    document.querySelectorAll(".selected").forEach((el) => el.classList.remove("selected"));
  }

  // ---- language ----------------------------------------------------------------------------------
  function applyLang() {
    document.documentElement.lang = S.lang === "en" ? "en" : "zh-CN";
    document.title = t("title");
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.getAttribute("data-i18n")); });
    $("#lang-toggle").textContent = S.lang === "en" ? "中文" : "EN";
    if (S.region) $("#region-name").textContent = S.region.display_name;
    renderLocation();
    renderList();
    renderDetail();
    renderRoute();
    renderFill();
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
    $("#fillup").addEventListener("click", (e) => {
      if (e.target.closest("#fillup-start")) fillStart();
      else if (e.target.closest("#fillup-again")) { fillReset(FILL.station); fillStart(); }
      else if (e.target.closest("#fill-paybtn")) fillPayNow();
      else if (e.target.closest("#inv-ask")) fillInvoice();
      else if (e.target.closest("#fill-redeem")) {
        FILL.redeem = e.target.checked;
        FILL.payKey = null; // another amount is another payment
        renderFill();
      }
      else {
        const b = e.target.closest(".fill-nozzle");
        if (b && !b.disabled) fillBind(b.getAttribute("data-token"));
      }
    });
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
    const setHead = () => document.documentElement.style.setProperty("--head", $("#app-header").offsetHeight + "px");
    setHead();
    window.addEventListener("resize", setHead);
    initMap(S.region);
    $("#allow-location").addEventListener("click", askLocation);
    renderLocation();
    loadView();
    renderList();
    askLocation();
    window.fuelApp = { map: map, state: S, openStation: openStation };
    document.body.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
