// The station console: login, live pumps, today's fill-ups, prices with the official ceiling, the shift
// handover (交班) and sales reports with a canvas chart. Chinese first; the EN button switches language.
"use strict";
(function () {
  const EN = {
    title: "Station console", logout: "Log out", login: "Staff login", username: "Username", password: "Password",
    signin: "Log in", pumps: "Pumps", fillups: "Today's fill-ups", prices: "Prices", handover: "Handover",
    reports: "Reports", time: "Time", pump: "Nozzle", grade: "Grade", litres: "Litres", unit: "Unit price",
    amount: "Amount", payment: "Payment", price: "Posted price", ceiling: "Official ceiling",
    notice: "Notice date", promotions: "Promotions", openShift: "Open shift",
    closeShift: "Close shift (read totalisers)", signOut: "Outgoing signs", opening: "Opening (L)",
    closing: "Closing (L)", unitPrices: "Unit prices", cash: "Cash (CNY)", card: "Card (CNY)",
    counted: "Counted cash (CNY)", saveTenders: "Save", incoming: "Incoming attendant", signIn: "Incoming signs",
    by: "By", byGrade: "Grade", byDay: "Day", byShift: "Shift", byNozzle: "Nozzle", byAttendant: "Attendant",
    byPayment: "Payment", from: "From", to: "To", show: "Show", csv: "Export CSV", xlsx: "Export Excel",
    item: "Item", count: "Sales",
  };
  const WORDS = {
    zh: {
      free: "空闲", "in-use": "加油中", "in-transaction": "交易中", "ready-to-pay": "待支付", locked: "锁定",
      "out-of-order": "故障", unknown: "未知", wechat: "微信", station: "站内收款", unpaid: "未支付",
      open: "当班中", counting: "清点中", awaiting_incoming: "待接班签字", signed: "已签字交接",
      balanced: "平账", short: "短款", over: "长款", shift: "班次", attendant: "当班员工", opened: "开班",
      closedAt: "结班", noShift: "当前没有班次，请开班。", sales: "应收(按销售)", wechatT: "微信",
      cardT: "银行卡", expected: "应有现金", countedT: "实点现金", diff: "差额", tolerance: "容差",
      unreported: "泵码与销售差(升)", nozzle: "号枪", noNozzle: "未指定油枪", push: "实时推送", poll: "轮询刷新",
      stale: (n, last) => `最高零售价可能已过期：在用调价通知日期为 ${n}，最近一个调价窗口为 ${last}，请导入新的调价通知。`,
      noCeilings: "尚未导入最高零售价调价通知，无法核对挂牌价。",
    },
    en: {
      free: "Free", "in-use": "Fuelling", "in-transaction": "In transaction", "ready-to-pay": "Ready to pay",
      locked: "Locked", "out-of-order": "Out of order", unknown: "Unknown", wechat: "WeChat",
      station: "At the till", unpaid: "Unpaid", open: "Running", counting: "Counting",
      awaiting_incoming: "Awaiting incoming", signed: "Signed", balanced: "Balanced", short: "Short",
      over: "Over", shift: "Shift", attendant: "Attendant", opened: "Opened", closedAt: "Closed",
      noShift: "No running shift: open one.", sales: "Sales", wechatT: "WeChat", cardT: "Card",
      expected: "Expected cash", countedT: "Counted cash", diff: "Difference", tolerance: "Tolerance",
      unreported: "Meter minus sales (L)", nozzle: "nozzle", noNozzle: "no nozzle", push: "Live", poll: "Polling",
      stale: (n, last) => `The official price ceilings may be stale: the notice in force is of ${n}, the last adjustment window was ${last}. Load the newer notices.`,
      noCeilings: "No official price ceiling notice is loaded: prices cannot be checked.",
    },
  };
  let lang = "zh";
  const zhText = new Map();
  const $ = (sel) => document.querySelector(sel);
  const w = (k) => WORDS[lang][k] || k;
  const yuan = (fen) => (fen == null ? "—" : (fen / 100).toFixed(2));
  const litres = (ml) => (ml == null ? "—" : (ml / 1000).toFixed(2));
  const fen = (v) => Math.round(parseFloat(v) * 100);
  let me = null;
  let shift = null;
  let timer = null;  // polling, only while the push channel is down
  let sock = null;  // the push channel (WebSocket)
  let retries = 0;
  let retryTimer = null;

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function row(tbody, cells) {
    const tr = document.createElement("tr");
    cells.forEach((c) => tr.appendChild(typeof c === "string" ? cell(c) : c));
    tbody.appendChild(tr);
    return tr;
  }
  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.querySelectorAll("[data-i18n]").forEach((el) => {
      if (!zhText.has(el)) zhText.set(el, el.textContent);
      el.textContent = lang === "zh" ? zhText.get(el) : EN[el.dataset.i18n] || zhText.get(el);
    });
    $("#lang").textContent = lang === "zh" ? "EN" : "中文";
    if ($("#live").dataset.mode !== "off") setLive($("#live").dataset.mode);
    if (me) refreshAll();
  }

  async function api(path, opts = {}) {
    const init = { credentials: "same-origin", headers: {}, ...opts };
    if (opts.json !== undefined) {
      init.method = init.method || "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    }
    const r = await fetch(path, init);
    if (r.status === 204) return null;
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      if (r.status === 401 && path !== "/v1/console/login" && !path.includes("sign-incoming")) showLogin();
      const err = new Error((body.error && body.error.message) || r.statusText);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  function showLogin() {
    me = null;
    $("#login").hidden = false;
    $("#app").hidden = true;
    $("#logout").hidden = true;
    $("#who").textContent = "";
    stopLive();
  }
  function showApp(session) {
    me = session;
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#logout").hidden = false;
    $("#who").textContent = `${session.station_name} · ${session.staff.display_name} (${session.staff.role})`;
    document.querySelector('[data-tab="reports"]').hidden = session.staff.role !== "manager";
    refreshAll();
    connectLive();
  }

  // Pumps and fill-ups are pushed over a WebSocket; while it is down the page polls every 2 s and reconnects
  // (1, 2, 4 ... 16 s apart). A closed session (4401) goes back to the login.
  function setLive(mode) {
    const el = $("#live");
    el.dataset.mode = mode;
    el.hidden = mode === "off";
    el.textContent = mode === "off" ? "" : w(mode);
  }
  function startPolling() {
    if (!timer) timer = setInterval(refreshLive, 2000);
  }
  function stopPolling() {
    if (timer) clearInterval(timer);
    timer = null;
  }
  function connectLive() {
    if (!me || sock) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/v1/console/stations/${me.staff.station_id}/live`);
    sock = ws;
    ws.onopen = () => { retries = 0; stopPolling(); setLive("push"); };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "pumps") renderPumps(m.pumps);
      else if (m.type === "fill_ups") renderFillUps(m.fill_ups);
    };
    ws.onclose = (ev) => {
      if (sock !== ws) return;  // closed on purpose (logout)
      sock = null;
      if (!me) return;
      if (ev.code === 4401) { showLogin(); return; }
      setLive("poll");
      refreshLive();
      startPolling();
      retryTimer = setTimeout(connectLive, 1000 * 2 ** Math.min(retries, 4));
      retries += 1;
    };
  }
  function stopLive() {
    const ws = sock;
    sock = null;
    if (ws) ws.close();
    clearTimeout(retryTimer);
    stopPolling();
    setLive("off");
  }

  async function refreshLive() {
    try {
      await Promise.all([loadPumps(), loadFillUps()]);
    } catch (e) { /* shown on the next successful poll */ }
  }
  function refreshAll() {
    refreshLive();
    loadPrices().catch(() => {});
    loadShift().catch(() => {});
    if (me && me.staff.role === "manager") loadReport().catch(() => {});
  }

  async function loadPumps() {
    renderPumps(await api("/v1/console/pumps"));
  }
  function renderPumps(data) {
    const box = document.createElement("div");
    box.className = "pumps";
    data.pumps.forEach((p) => {
      const div = document.createElement("div");
      div.className = `pump st-${p.status}`;
      div.dataset.test = `pump-${p.pump_no}`;
      const h = document.createElement("h3");
      h.textContent = `${p.label || p.pump_no}`;
      const s = document.createElement("div");
      s.className = "status";
      s.textContent = w(p.status);
      const n = document.createElement("div");
      n.textContent = p.nozzles.map((z) => `${z.nozzle_no}: ${z.grade}#`).join("  ");
      div.append(h, s, n);
      box.appendChild(div);
    });
    $("#pumps").replaceChildren(box);
  }

  async function loadFillUps() {
    renderFillUps(await api("/v1/console/fill-ups?limit=50"));
  }
  function renderFillUps(data) {
    const tb = $("#fillups tbody");
    tb.replaceChildren();
    data.fill_ups.forEach((f) => {
      const t = f.ended_at ? new Date(f.ended_at).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai" }) : "—";
      row(tb, [t, `${f.pump_no}-${f.nozzle_no ?? "?"}`, `${f.grade}#`, cell(litres(f.volume_ml), "num"),
        cell(yuan(f.unit_price_fen), "num"), cell(yuan(f.amount_fen), "num"), w(f.payment)]);
    });
  }

  async function loadPrices() {
    const data = await api("/v1/console/prices");
    const c = data.ceiling_status;
    const banner = $("#ceiling-banner");
    banner.hidden = !c.stale;
    banner.textContent = !c.stale ? "" : c.newest_notice ? w("stale")(c.newest_notice, c.last_adjustment_window) : w("noCeilings");
    const tb = $("#prices tbody");
    tb.replaceChildren();
    data.grades.forEach((g) => {
      const over = g.price_fen != null && g.ceiling_fen != null && g.price_fen > g.ceiling_fen;
      row(tb, [`${g.grade}#`, cell(yuan(g.price_fen), over ? "num error" : "num"), cell(yuan(g.ceiling_fen), "num"),
        g.ceiling_notice_date || "—"]);
    });
    const ul = $("#promotions");
    ul.replaceChildren();
    data.promotions.forEach((p) => {
      const li = document.createElement("li");
      li.textContent = `${p.title} (${p.kind} ${p.value})`;
      ul.appendChild(li);
    });
    if (!data.promotions.length) {
      const li = document.createElement("li");
      li.textContent = lang === "zh" ? "当前无优惠活动" : "No promotion now";
      ul.appendChild(li);
    }
  }

  async function loadShift() {
    try {
      shift = await api("/v1/console/shifts/current");
    } catch (e) {
      if (e.status !== 404) throw e;
      shift = null;
    }
    renderShift();
  }

  function renderShift() {
    const head = $("#shift-head");
    const tb = $("#readings tbody");
    const rec = $("#recon tbody");
    tb.replaceChildren();
    rec.replaceChildren();
    $("#open-shift").hidden = !!shift;
    $("#close-shift").hidden = !shift || shift.state !== "open";
    $("#sign-out").hidden = !shift || shift.state !== "counting";
    $("#tenders").hidden = !shift || shift.state !== "counting";
    $("#sign-in").hidden = !shift || shift.state !== "awaiting_incoming";
    if (!shift) {
      head.textContent = w("noShift");
      return;
    }
    const when = (t) => (t ? new Date(t).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { timeZone: "Asia/Shanghai" }) : "—");
    head.textContent = `${w("shift")} #${shift.id} · ${w(shift.state)} · ${w("opened")} ${when(shift.opened_at)}` +
      (shift.closed_at ? ` · ${w("closedAt")} ${when(shift.closed_at)}` : "");
    shift.nozzles.forEach((n) => {
      const loose = n.nozzle_no == null;  // sales reported without a nozzle: no totaliser of their own
      const none = loose || (n.sales === 0 && n.opening_ml === 0 && n.closing_ml === 0);  // no reading yet
      row(tb, [`${n.pump_no}-${loose ? w("noNozzle") : n.nozzle_no}`, `${n.grade}#`, cell(none ? "—" : litres(n.opening_ml), "num"),
        cell(none ? "—" : litres(n.closing_ml), "num"), cell(litres(loose ? n.sales_ml : n.closing_ml - n.opening_ml), "num"),
        cell(yuan(n.amount_fen), "num"), n.prices.map(yuan).join(" / ")]);
    });
    const r = shift.reconciliation;
    if (r) {
      const badge = document.createElement("span");
      badge.className = `badge ${r.status}`;
      badge.textContent = w(r.status);
      badge.dataset.test = "recon-status";
      [["sales", r.sales_fen], ["wechatT", r.wechat_fen], ["cardT", r.card_fen], ["expected", r.expected_cash_fen],
        ["countedT", r.counted_cash_fen], ["diff", r.cash_difference_fen], ["tolerance", r.tolerance_fen]]
        .forEach(([k, v]) => row(rec, [w(k), cell(yuan(v), "num")]));
      row(rec, [w("unreported"), cell(litres(r.unreported_ml), "num")]);
      const tr = row(rec, [""]);
      tr.firstChild.appendChild(badge);
    }
  }

  async function handover(action, json) {
    $("#handover-error").textContent = "";
    try {
      const out = await api(`/v1/console/shifts${action}`, json === undefined ? { method: "POST" } : { json });
      shift = out && out.next_shift ? out.next_shift : out;
      renderShift();
      if (out && out.signed) loadShift();
    } catch (e) {
      $("#handover-error").textContent = e.message;
    }
  }

  function reportUrl(format) {
    const f = new FormData($("#report-form"));
    const q = new URLSearchParams({ by: f.get("by"), format, lang });
    if (f.get("first")) q.set("first", f.get("first"));
    if (f.get("last")) q.set("last", f.get("last"));
    return `/v1/console/reports/sales?${q}`;
  }

  function drawChart(rows) {
    const c = $("#chart");
    const ctx = c.getContext("2d");
    ctx.clearRect(0, 0, c.width, c.height);
    const max = Math.max(1, ...rows.map((r) => r.amount_fen));
    const left = 60, bottom = c.height - 30, top = 16;
    const bw = rows.length ? Math.min(80, (c.width - left - 10) / rows.length - 12) : 0;
    ctx.strokeStyle = "#9aa8b6";
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, bottom); ctx.lineTo(c.width - 5, bottom); ctx.stroke();
    ctx.fillStyle = "#1d2733";
    ctx.font = "12px sans-serif";
    ctx.fillText(yuan(max), 4, top + 4);
    ctx.fillText("0", 40, bottom);
    rows.forEach((r, i) => {
      const h = ((bottom - top) * r.amount_fen) / max;
      const x = left + 10 + i * (bw + 12);
      ctx.fillStyle = "#0b5cad";
      ctx.fillRect(x, bottom - h, bw, h);
      ctx.fillStyle = "#1d2733";
      ctx.fillText(String(w(r.key)).slice(0, 16), x, bottom + 14);
      ctx.fillText(yuan(r.amount_fen), x, bottom - h - 4);
    });
  }

  async function loadReport() {
    $("#report-error").textContent = "";
    try {
      const data = await api(reportUrl("json"));
      const tb = $("#report-table tbody");
      tb.replaceChildren();
      data.rows.forEach((r) => row(tb, [w(r.key), cell(String(r.sales), "num"), cell(litres(r.volume_ml), "num"),
        cell(yuan(r.amount_fen), "num")]));
      drawChart(data.rows);
      $("#csv").href = reportUrl("csv");
      $("#xlsx").href = reportUrl("xlsx");
    } catch (e) {
      $("#report-error").textContent = e.message;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyLang(); });
    $("#login").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      $("#login-error").textContent = "";
      try {
        showApp(await api("/v1/console/login", { json: { username: f.get("username"), password: f.get("password") } }));
        ev.target.reset();
      } catch (e) {
        $("#login-error").textContent = e.message;
      }
    });
    $("#logout").addEventListener("click", async () => { await api("/v1/console/logout", { method: "POST" }).catch(() => {}); showLogin(); });
    document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => {
      document.querySelectorAll("#tabs button").forEach((x) => x.classList.toggle("on", x === b));
      document.querySelectorAll(".tab").forEach((s) => { s.hidden = s.id !== b.dataset.tab; });
      if (b.dataset.tab === "reports") loadReport();
      if (b.dataset.tab === "handover") loadShift().catch(() => {});
    }));
    $("#open-shift").addEventListener("click", () => handover(""));
    $("#close-shift").addEventListener("click", () => handover(`/${shift.id}/close`));
    $("#sign-out").addEventListener("click", () => handover(`/${shift.id}/sign-outgoing`));
    $("#tenders").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      handover(`/${shift.id}/tenders`, { cash_fen: fen(f.get("cash")), card_fen: fen(f.get("card")), counted_cash_fen: fen(f.get("counted")) });
    });
    $("#sign-in").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      handover(`/${shift.id}/sign-incoming`, { username: f.get("username"), password: f.get("password") });
      ev.target.reset();
    });
    const today = new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });  // YYYY-MM-DD
    $("#report-form input[name=first]").value = today;
    $("#report-form input[name=last]").value = today;
    $("#report-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadReport(); });
    api("/v1/console/me").then(showApp).catch(showLogin);
  });
})();
