/* 我的 (me): the driver's own e-records on the map page: the points (balance, pending, expiring soon and
   history from GET /v1/me/points), the monthly summary, the records list and one record's detail (receipt
   fields, promotion, points earned and redeemed, WeChat transaction), and the CSV download. The session token
   is the page's user token (sessionStorage "fuel.user_token"); without one, development and tests log in
   through the demo login like the fill-up flow. Independent of app.js: it only adds a header button and a
   sheet of its own. */
(function () {
  "use strict";
  const TOKEN_KEY = "fuel.user_token";
  const M = { token: null, cursor: null, records: [], pointsCursor: null };
  const POINT_KINDS = {  // ledger transfer kinds (store/_ledger.py) as the driver reads them
    earn: "加油获得 earned", hold: "支付抵扣 redeemed", void: "未付款退回 released", expire: "过期 expired",
    reverse_earn: "退款扣回 taken back", return_redeemed: "退款退回 returned", adjust: "调整 adjusted",
  };

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function yuan(fen) { return fen == null ? "–" : "¥" + (fen / 100).toFixed(2); }
  function perLitre(fen) { return fen == null ? "–" : "¥" + (fen / 100).toFixed(2) + "/L"; }
  function when(iso) { return iso ? iso.slice(0, 16).replace("T", " ") : "–"; }

  async function call(path, opts) {
    const o = opts || {};
    const headers = { Accept: o.accept || "application/json", Authorization: "Bearer " + M.token };
    if (o.body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method: o.method || "GET", headers: headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) });
    if (r.status === 401 && !o.retried) {  // the token expired or the account is gone: log in again once
      sessionStorage.removeItem(TOKEN_KEY);
      await login();
      return call(path, Object.assign({}, o, { retried: true }));
    }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const b = await r.json(); if (b && b.error) msg = b.error.message; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return o.raw ? r : r.json();
  }

  async function login() {
    M.token = sessionStorage.getItem(TOKEN_KEY);
    if (M.token) return;
    const r = await fetch("/v1/auth/demo", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    if (!r.ok) throw new Error("登录失败 (login failed): " + r.status);
    M.token = (await r.json()).token;
    sessionStorage.setItem(TOKEN_KEY, M.token);
  }

  function sheet() { return document.getElementById("me-sheet"); }
  function body() { return document.getElementById("me-body"); }

  function summaryHtml(s) {
    if (!s.months.length) return "";
    const m = s.months[s.months.length - 1];
    const saving = m.saving_vs_nearby_fen_per_litre;
    return '<div class="me-summary" data-test="me-summary" data-month="' + esc(m.month) + '">'
      + '<div class="me-month">' + esc(m.month) + " 本月 · this month</div>"
      + '<div class="me-figures">'
      + '<div><b data-test="me-litres">' + m.litres.toFixed(2) + "</b><small>升 litres</small></div>"
      + '<div><b data-test="me-spend">' + yuan(m.spend_fen) + "</b><small>花费 spend</small></div>"
      + '<div><b data-test="me-avg-paid">' + perLitre(m.avg_paid_fen_per_litre) + "</b><small>实付均价 paid</small></div>"
      + '<div><b data-test="me-avg-nearby">' + perLitre(m.avg_nearby_list_fen_per_litre) + "</b><small>附近挂牌均价 nearby list</small></div>"
      + "</div>"
      + (saving == null ? "" : '<div class="me-saving' + (saving >= 0 ? "" : " worse") + '" data-test="me-saving">'
        + (saving >= 0 ? "比附近便宜 " : "比附近贵 ") + perLitre(Math.abs(saving)) + "</div>")
      + (m.l_per_100km == null ? "" : '<div class="me-economy" data-test="me-economy">百公里油耗 ' + m.l_per_100km.toFixed(2) + " L/100km</div>")
      + "</div>";
  }

  function pointEntryHtml(e) {
    return '<li class="me-pts-entry" data-test="me-pts-entry" data-kind="' + esc(e.kind) + '">'
      + '<span class="kind">' + esc(POINT_KINDS[e.kind] || e.kind) + "</span>"
      + '<span class="when">' + esc(when(e.at)) + "</span>"
      + '<b class="' + (e.points >= 0 ? "plus" : "minus") + '">' + (e.points >= 0 ? "+" : "") + e.points + "</b></li>";
  }

  function pointsHtml(p) {
    const pending = p.pending.reduce((n, h) => n + h.points, 0);
    const expiring = p.expiring.reduce((n, x) => n + x.points, 0);
    const first = p.expiring[0];
    return '<div class="me-points" data-test="me-points">'
      + '<div class="me-month">积分 · points <small>' + p.unit_points + " 积分抵 " + yuan(p.unit_fen) + "</small></div>"
      + '<div class="me-figures">'
      + '<div><b data-test="me-pts-balance">' + p.balance + "</b><small>积分余额 balance</small></div>"
      + '<div><b data-test="me-pts-redeemable">' + p.redeemable + "</b><small>可用 usable</small></div>"
      + '<div><b data-test="me-pts-pending">' + pending + "</b><small>待确认 pending</small></div>"
      + '<div><b data-test="me-pts-expiring">' + expiring + "</b><small>30 天内到期 expiring soon</small></div>"
      + "</div>"
      + (first ? '<div class="me-pts-soon" data-test="me-pts-soon">' + esc(first.expires_at.slice(0, 10)) + " 到期 "
        + first.points + " 积分 · expires</div>" : "")
      + (p.history.length
        ? '<ul class="me-pts-history" data-test="me-pts-history">' + p.history.map(pointEntryHtml).join("") + "</ul>"
        : '<div class="empty" data-test="me-pts-empty">还没有积分记录 · no points yet</div>')
      + (p.next_cursor ? '<button type="button" id="me-pts-more" data-test="me-pts-more">更多积分记录 · more</button>' : "")
      + "</div>";
  }

  async function morePoints() {
    const p = await call("/v1/me/points?limit=10&cursor=" + encodeURIComponent(M.pointsCursor));
    M.pointsCursor = p.next_cursor;
    document.querySelector("#me-body .me-pts-history").insertAdjacentHTML("beforeend", p.history.map(pointEntryHtml).join(""));
    if (!M.pointsCursor) document.getElementById("me-pts-more").remove();
  }

  function itemHtml(r) {
    return '<li class="me-record" data-test="me-record" data-id="' + r.id + '">'
      + '<div class="info"><div class="name">' + esc(r.station_name) + "</div>"
      + '<div class="meta">' + esc(when(r.paid_at)) + " · " + esc(r.grade) + "# · " + r.litres.toFixed(2) + " L"
      + (r.promotions.length ? ' <span class="badge">惠</span>' : "") + "</div></div>"
      + '<div class="price"><div class="item-price">' + yuan(r.amount_paid_fen) + "</div>"
      + (r.amount_paid_fen !== r.list_amount_fen ? "<s>" + yuan(r.list_amount_fen) + "</s>" : "") + "</div></li>";
  }

  async function showList() {
    const el = body();
    el.innerHTML = '<div class="empty">加载中… loading</div>';
    try {
      const [points, summary, page] = await Promise.all([
        call("/v1/me/points?limit=10"), call("/v1/me/records/summary"), call("/v1/me/records?limit=20"),
      ]);
      M.records = page.records;
      M.cursor = page.next_cursor;
      M.pointsCursor = points.next_cursor;
      el.innerHTML = pointsHtml(points) + summaryHtml(summary)
        + '<div class="me-actions"><button type="button" id="me-csv" data-test="me-csv">导出 CSV · export</button></div>'
        + (page.records.length
          ? '<ul id="me-records" data-test="me-records">' + page.records.map(itemHtml).join("") + "</ul>"
          : '<div class="empty" data-test="me-empty">还没有加油记录 · no fill-ups yet</div>')
        + (M.cursor ? '<button type="button" id="me-more" data-test="me-more">更多 · more</button>' : "");
    } catch (e) {
      el.innerHTML = '<div class="empty" data-test="me-error">' + esc(e.message) + "</div>";
    }
  }

  async function more() {
    const page = await call("/v1/me/records?limit=20&cursor=" + encodeURIComponent(M.cursor));
    M.records = M.records.concat(page.records);
    M.cursor = page.next_cursor;
    document.getElementById("me-records").insertAdjacentHTML("beforeend", page.records.map(itemHtml).join(""));
    if (!M.cursor) document.getElementById("me-more").remove();
  }

  function row(label, value, test) {
    return "<tr><th>" + esc(label) + '</th><td' + (test ? ' data-test="' + test + '"' : "") + ">" + esc(value) + "</td></tr>";
  }

  async function showRecord(id) {
    const el = body();
    try {
      const r = await call("/v1/me/records/" + id);
      const promo = r.promotions.map((p) => p.title + " −" + yuan(p.discount_fen)).join("; ") || "无 none";
      el.innerHTML = '<button type="button" id="me-back" data-test="me-back">‹ 返回 back</button>'
        + '<div class="me-detail" data-test="me-detail" data-id="' + r.id + '">'
        + "<h3>" + esc(r.station_name) + "</h3>"
        + '<table class="prices me-table">'
        + row("时间 time", when(r.paid_at))
        + row("油枪 pump · nozzle", r.pump_no + " 号机 · " + (r.nozzle_no == null ? "–" : r.nozzle_no + " 号枪"))
        + row("油品 grade", r.grade + "#")
        + row("升数 litres", r.litres.toFixed(3) + " L", "me-d-litres")
        + row("单价 unit price", perLitre(r.unit_price_fen))
        + row("原价 list amount", yuan(r.list_amount_fen))
        + row("优惠 promotion", promo, "me-d-promo")
        + row("实付 paid", yuan(r.amount_paid_fen), "me-d-paid")
        + (r.refunded_fen ? row("退款 refunded", yuan(r.refunded_fen)) : "")
        + row("获得积分 points earned", r.points_earned + " 积分", "me-d-points-earned")
        + (r.points_redeemed ? row("积分抵扣 points redeemed", r.points_redeemed + " 积分 · −" + yuan(r.redemption_fen),
          "me-d-points-redeemed") : "")
        + (r.points_reversed || r.points_returned ? row("退款积分 points on refund", "扣回 taken back −" + r.points_reversed
          + " · 退回 returned +" + r.points_returned, "me-d-points-reversed") : "")
        + row("微信支付单号 WeChat Pay", r.wechat_transaction_id, "me-d-transaction")
        + row("发票 invoice", r.invoice_status || "未开 none")
        + row("流水号 trace no", r.receipt.trace_no, "me-d-trace")
        + row("终端 terminal", r.receipt.terminal)
        + row("小票号 receipt no", r.receipt.receipt_no)
        + (r.odometer_km == null ? "" : row("里程 odometer", r.odometer_km + " km"))
        + (r.l_per_100km == null ? "" : row("油耗 consumption", r.l_per_100km.toFixed(2) + " L/100km"))
        + "</table></div>";
    } catch (e) {
      el.innerHTML = '<button type="button" id="me-back" data-test="me-back">‹ 返回 back</button>'
        + '<div class="empty" data-test="me-error">' + esc(e.message) + "</div>";
    }
  }

  async function downloadCsv() {
    const r = await call("/v1/me/records.csv", { raw: true, accept: "text/csv" });
    const blob = await r.blob();
    const cd = r.headers.get("Content-Disposition") || "";
    const m = /filename="([^"]+)"/.exec(cd);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = m ? m[1] : "fuel-records.csv";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  async function open() {
    sheet().hidden = false;
    body().innerHTML = '<div class="empty">加载中… loading</div>';
    try {
      await login();
    } catch (e) {
      body().innerHTML = '<div class="empty" data-test="me-error">' + esc(e.message) + "</div>";
      return;
    }
    await showList();
  }

  function install() {
    const header = document.getElementById("app-header");
    const phone = document.getElementById("phone");
    if (!header || !phone) return;
    const btn = document.createElement("button");
    btn.id = "me-open";
    btn.type = "button";
    btn.setAttribute("data-test", "me-open");
    btn.textContent = "我的";
    header.insertBefore(btn, document.getElementById("lang-toggle"));
    const s = document.createElement("section");
    s.id = "me-sheet";
    s.className = "sheet detail";
    s.setAttribute("data-test", "me-sheet");
    s.hidden = true;
    s.innerHTML = '<div class="sheet-handle"></div><button id="me-close" type="button" aria-label="close">×</button>'
      + '<h2 class="me-title">我的加油记录 <small>my fill-ups</small></h2><div id="me-body"></div>';
    phone.appendChild(s);
    btn.addEventListener("click", open);
    s.addEventListener("click", (e) => {
      const t = e.target.closest("button, .me-record");
      if (!t) return;
      if (t.id === "me-close") s.hidden = true;
      else if (t.id === "me-back") showList();
      else if (t.id === "me-csv") downloadCsv().catch((err) => alert(err.message));
      else if (t.id === "me-more") more();
      else if (t.id === "me-pts-more") morePoints();
      else if (t.classList.contains("me-record")) showRecord(t.getAttribute("data-id"));
    });
  }

  window.fuelMe = { open: open, showRecord: showRecord };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", install);
  else install();
})();
