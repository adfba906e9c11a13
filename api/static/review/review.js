// The risk review queue: GET /v1/risk/reviews, POST /v1/risk/decisions/{id}/review (operator API key).
"use strict";
const $ = (id) => document.getElementById(id);
const text = (tag, value, cls) => { const e = document.createElement(tag); e.textContent = value; if (cls) e.className = cls; return e; };
const POINTS = { bind: "绑定油枪 bind", pay: "支付 pay", redeem: "优惠核销 redeem", price: "调价 price" };

async function api(path, options = {}) {
  const key = $("key").value.trim();
  const resp = await fetch(path, { ...options, headers: { "X-API-Key": key, "Content-Type": "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || `HTTP ${resp.status}`);
  return body;
}

function card(d) {
  const c = document.createElement("div");
  c.className = "card";
  c.dataset.id = d.id;
  const h = text("h2", `#${d.id} ${POINTS[d.point] || d.point} · ${new Date(d.created_at).toLocaleString("zh-CN", { timeZone: "Asia/Shanghai" })}`);
  c.append(h);
  c.append(text("span", d.outcome, `tag ${d.outcome}`), text("span", `rules ${d.rules_version}`, "tag"));
  const fired = document.createElement("table");
  fired.append(Object.assign(document.createElement("tr"), { innerHTML: "<th>rule</th><th>outcome</th><th>reason</th><th>expression</th>" }));
  for (const f of d.fired) {
    const tr = document.createElement("tr");
    const expr = document.createElement("td"); expr.append(text("code", f.expr));
    tr.append(text("td", f.rule), text("td", f.outcome), text("td", f.reason), expr);
    fired.append(tr);
  }
  c.append(fired);
  const facts = document.createElement("table");
  for (const [k, v] of Object.entries({ ...d.subject, ...d.facts })) {
    const tr = document.createElement("tr");
    tr.append(text("th", k), text("td", JSON.stringify(v)));
    facts.append(tr);
  }
  c.append(text("div", "Evidence"), facts);
  const actions = document.createElement("div");
  actions.className = "actions";
  const note = Object.assign(document.createElement("input"), { placeholder: "note (audited)", maxLength: 500 });
  const ok = text("button", "Approve 通过", "approve");
  const no = text("button", "Reject 拒绝", "reject");
  const decide = async (approve) => {
    try {
      const r = await api(`/v1/risk/decisions/${d.id}/review`, { method: "POST", body: JSON.stringify({ approve, note: note.value }) });
      c.replaceChildren(text("h2", `#${d.id} ${r.review_state} by ${r.reviewed_by}`));
      const left = document.querySelectorAll(".card .actions").length;
      $("status").textContent = left ? `${left} decision(s) awaiting review` : "Nothing else awaits review.";
    } catch (e) { $("status").textContent = `#${d.id}: ${e.message}`; }
  };
  ok.onclick = () => decide(true);
  no.onclick = () => decide(false);
  if (d.review_state === "pending") { actions.append(note, ok, no); c.append(actions); }
  return c;
}

async function load() {
  $("status").textContent = "Loading…";
  try {
    const body = await api("/v1/risk/reviews?limit=50");
    $("list").replaceChildren(...body.decisions.map(card));
    $("status").textContent = body.decisions.length ? `${body.decisions.length} decision(s) awaiting review` : "Nothing awaits review.";
  } catch (e) { $("status").textContent = e.message; }
}
$("load").onclick = load;
