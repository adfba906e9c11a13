"""Price anomalies screened where prices are really written, through a real API server and PostGIS: the
manager API's `PUT /v1/stations/{id}/prices` and the price feed loader. An ordinary change is published; an
anomalous one is held (202), invisible to drivers and in the operators' review queue until approved
(then published, audited) or rejected (never published); the station's version and ETag follow what was
actually published."""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest

from config import Settings
from ingest._prices import load_prices
from risk import Rule
from store import _risk
from store._prices import PriceIn, current_prices, insert_price
from tests._risk import TZ, ZONE, PriceDesk, anomalous, price_desk, usual_prices

pytestmark = pytest.mark.slow  # a real server process
SHOTS = Path(__file__).resolve().parent.parent / "reports" / "screenshots"


@pytest.fixture(scope="module")
def env(module_db: str, shared_data: Path) -> Iterator[PriceDesk]:
    with price_desk(module_db, shared_data) as desk:
        yield desk


@pytest.fixture(scope="module")
def ceiling(env: PriceDesk) -> dict[str, Decimal]:
    return env.ceiling


def test_an_ordinary_change_is_published_and_an_anomalous_one_held(
    env: PriceDesk, ceiling: dict[str, Decimal]
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    before = env.shown(sid)
    etag = env.etag(sid)
    ok92 = usual["92"] + Decimal("0.08")
    cut95 = anomalous(ceiling, "95")
    body = [{"grade": "92", "price_cny": str(ok92)}, {"grade": "95", "price_cny": str(cut95)}]
    r = env.api("PUT", f"/v1/stations/{sid}/prices", key, json=body, headers={"If-Match": etag})
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["held"] is True and out["decision_ids"] == [out["decision_id"]]
    actions = {p["grade"]: (p["action"], p["decision_id"]) for p in out["prices"]}
    assert actions == {"92": ("new", None), "95": ("held", out["decision_id"])}
    # the fine grade is published (the station's version moved once), the odd one is not
    assert r.headers["ETag"] == f'"{int(etag.strip(chr(34))) + 1}"' == env.etag(sid)
    shown = env.shown(sid)
    assert shown["92"] == float(ok92) and shown["95"] == before["95"] != float(cut95)
    # the operators' queue holds it with its evidence
    queue = env.api("GET", "/v1/risk/reviews?limit=200", env.operator).json()["decisions"]
    held = next(d for d in queue if d["id"] == out["decision_id"])
    assert held["point"] == "price" and held["outcome"] == "review" and held["review_state"] == "pending"
    assert {f["rule"] for f in held["fired"]} >= {"price.jump", "price.own_history"}
    assert held["subject"]["station_id"] == sid and held["subject"]["price_cny"] == str(cut95)
    # a manager may not approve their own price
    assert (
        env.api("POST", f"/v1/risk/decisions/{held['id']}/review", key, json={"approve": True}).status_code
        == 403
    )
    # approved: published through the audited price path, and the version moves
    etag_before = env.etag(sid)
    ok = env.review(held["id"], True, "a clearance sale, confirmed by phone")
    assert ok.status_code == 200 and ok.json()["review_state"] == "approved", ok.text
    assert env.shown(sid)["95"] == float(cut95)
    assert env.etag(sid) != etag_before
    audit = env.sql(
        "SELECT actor, action FROM audit_log WHERE entity = 'price' AND new_value ->> 'station_id' = %s"
        " AND new_value ->> 'grade' = '95' AND (new_value ->> 'price_cny')::numeric = %s",
        str(sid),
        cut95,
    )
    assert audit == [("price-desk", "create")]
    review_audit = env.sql(
        "SELECT actor, new_value ->> 'review_state' FROM audit_log WHERE entity = 'risk_decision'"
        " AND entity_id = %s",
        str(held["id"]),
    )
    assert review_audit == [("price-desk", "approved")]
    # a stale ETag (from before the approval) is refused
    r = env.api(
        "PUT",
        f"/v1/stations/{sid}/prices",
        key,
        json=[{"grade": "92", "price_cny": str(usual["92"])}],
        headers={"If-Match": etag_before},
    )
    assert r.status_code == 409, r.text


def test_a_rejected_price_is_never_published_and_a_held_one_keeps_the_version(
    env: PriceDesk, ceiling: dict[str, Decimal]
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    before = env.shown(sid)
    etag = env.etag(sid)
    cut92 = anomalous(ceiling, "92")
    r = env.api(
        "PUT",
        f"/v1/stations/{sid}/prices",
        key,
        json={"prices": [{"grade": "92", "price_cny": str(cut92)}]},
        headers={"If-Match": etag},
    )
    assert r.status_code == 202 and r.json()["prices"][0]["action"] == "held", r.text
    decision = r.json()["decision_id"]
    # nothing was published: the version (and ETag) stay, and the same ETag still writes
    assert r.headers["ETag"] == etag == env.etag(sid)
    assert env.sql("SELECT count(*) FROM prices WHERE station_id = %s AND price_cny = %s", sid, cut92) == [
        (0,)
    ]
    assert env.review(decision, False, "a typo").status_code == 200
    assert env.shown(sid) == before
    assert env.sql("SELECT count(*) FROM prices WHERE station_id = %s AND price_cny = %s", sid, cut92) == [
        (0,)
    ]
    assert env.review(decision, True).status_code == 409  # reviewed once
    assert env.sql("SELECT count(*) FROM prices WHERE station_id = %s AND price_cny = %s", sid, cut92) == [
        (0,)
    ]
    step = usual["92"] + Decimal("0.07")
    r = env.api(
        "PUT",
        f"/v1/stations/{sid}/prices",
        key,
        json=[{"grade": "92", "price_cny": str(step)}],
        headers={"If-Match": etag},
    )
    assert r.status_code == 200 and "held" not in r.json(), r.text
    assert r.json()["prices"][0]["action"] == "new" and env.shown(sid)["92"] == float(step)


def test_a_denied_price_refuses_the_request_and_writes_nothing(
    env: PriceDesk, ceiling: dict[str, Decimal]
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    odd = usual["95"] + Decimal("0.07")
    with psycopg.connect(env.db_url) as conn, conn.transaction():
        rule = Rule(
            "price.test_deny", "price", f"new_fen == {int(odd * 100)}", "deny", "a price the desk forbids"
        )
        _risk.put_override(conn, rule, enabled=True, actor="test")
    etag = env.etag(sid)
    body = [
        {"grade": "92", "price_cny": str(usual["92"] + Decimal("0.02"))},
        {"grade": "95", "price_cny": str(odd)},
    ]
    r = env.api("PUT", f"/v1/stations/{sid}/prices", key, json=body, headers={"If-Match": etag})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "RiskDenied" and "a price the desk forbids" in err["message"]
    assert env.etag(sid) == etag  # nothing written, not even the fine grade
    assert env.sql("SELECT outcome FROM risk_decisions WHERE id = %s", err["decision_id"]) == [("deny",)]


def test_the_feed_loader_holds_anomalous_prices(
    env: PriceDesk, ceiling: dict[str, Decimal], shared_data: Path, tmp_path: Path
) -> None:
    usual = usual_prices(ceiling)
    sid, _ = env.station(usual)
    ok92, cut95 = usual["92"] + Decimal("0.06"), anomalous(ceiling, "95")
    feed = tmp_path / f"feed-{uuid.uuid4().hex[:6]}.csv"
    with feed.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["station", "grade", "price_cny"])
        w.writerow([sid, "92", ok92])
        w.writerow([sid, "95", cut95])
    settings = Settings(database_url=env.db_url, region="lijiang", shared_data_dir=shared_data)
    dry = load_prices(feed, settings=settings, dry_run=True, actor="feed:test")
    assert (dry.new, dry.extra.get("held")) == (1, 1) and not dry.written
    assert env.sql("SELECT count(*) FROM risk_decisions WHERE subject ->> 'actor' = 'feed:test'") == [(0,)]
    s = load_prices(feed, settings=settings, actor="feed:test")
    assert s.written and (s.new, s.updated, s.extra.get("held")) == (1, 0, 1)
    assert "prices held for review" in s.examples and "held: 1" in s.render()
    shown = env.shown(sid)
    assert shown["92"] == float(ok92) and shown["95"] != float(cut95)
    held = env.sql(
        "SELECT id, action -> 'publish_price' ->> 'source' FROM risk_decisions"
        " WHERE point = 'price' AND review_state = 'pending' AND subject @> %s::jsonb",
        f'{{"station_id": {sid}, "grade": "95"}}',
    )
    assert len(held) == 1 and held[0][1] == "feed"
    assert env.review(held[0][0], True).status_code == 200
    assert env.shown(sid)["95"] == float(cut95)


def test_a_held_price_on_the_review_page_in_chromium(env: PriceDesk, ceiling: dict[str, Decimal]) -> None:
    from playwright.sync_api import sync_playwright

    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    cut = anomalous(ceiling, "95")
    r = env.api(
        "PUT",
        f"/v1/stations/{sid}/prices",
        key,
        json=[{"grade": "95", "price_cny": str(cut)}],
        headers={"If-Match": env.etag(sid)},
    )
    assert r.status_code == 202, r.text
    held = r.json()["decision_id"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{env.server.base}/console/review")
            page.fill("#key", env.operator)
            page.click("#load")
            card = page.locator(f'.card[data-id="{held}"]')
            card.wait_for(timeout=10_000)
            shown = card.inner_text()
            assert "price.jump" in shown and "a price change above 15 percent" in shown and str(cut) in shown
            page.screenshot(path=str(SHOTS / "risk_review_price_held.png"), full_page=True)
            card.locator("input").fill("clearance sale, confirmed by phone")
            card.locator("button.approve").click()
            page.locator(f'.card[data-id="{held}"] h2', has_text="approved by price-desk").wait_for(
                timeout=10_000
            )
            page.screenshot(path=str(SHOTS / "risk_review_price_approved.png"), full_page=True)
        finally:
            browser.close()
    assert env.shown(sid)["95"] == float(cut)


def _put(env: PriceDesk, sid: int, key: str, item: dict[str, str], etag: str | None = None) -> httpx.Response:
    headers = {"If-Match": etag or env.etag(sid)}
    return env.api("PUT", f"/v1/stations/{sid}/prices", key, json=[item], headers=headers)


def _decisions(env: PriceDesk, sid: int, grade: str) -> list[tuple[int, str | None, str]]:
    """(id, review state, price) of every price decision of the station's grade, oldest first."""
    rows = env.sql(
        "SELECT id, review_state, subject ->> 'price_cny' FROM risk_decisions WHERE point = 'price'"
        " AND subject @> %s::jsonb ORDER BY id",
        json.dumps({"station_id": sid, "grade": grade}),
    )
    return [(int(i), s, str(p)) for i, s, p in rows]


def _feed(tmp_path: Path, rows: list[tuple[int, str, Decimal]]) -> Path:
    feed = tmp_path / f"feed-{uuid.uuid4().hex[:6]}.csv"
    with feed.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["station", "grade", "price_cny"])
        w.writerows(rows)
    return feed


def test_the_same_held_price_again_answers_its_pending_decision(
    env: PriceDesk, ceiling: dict[str, Decimal], shared_data: Path, tmp_path: Path
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    cut = anomalous(ceiling, "95")
    first = _put(env, sid, key, {"grade": "95", "price_cny": str(cut)})
    assert first.status_code == 202, first.text
    held = first.json()["decision_id"]
    # a retried request: the same decision, still held, nothing new in the queue
    again = _put(env, sid, key, {"grade": "95", "price_cny": str(cut)})
    assert again.status_code == 202, again.text
    assert again.json()["decision_id"] == held and again.json()["prices"][0]["action"] == "held"
    assert _decisions(env, sid, "95") == [(held, "pending", str(cut))]
    # another price for the same grade is another decision: the operator sees both
    lower = cut - Decimal("0.10")
    other = _put(env, sid, key, {"grade": "95", "price_cny": str(lower)})
    assert other.status_code == 202 and other.json()["decision_id"] != held, other.text
    second = other.json()["decision_id"]
    # two identical requests at once still end with one pending decision
    lowest = cut - Decimal("0.20")
    etag = env.etag(sid)
    with ThreadPoolExecutor(2) as pool:
        both = list(
            pool.map(lambda _: _put(env, sid, key, {"grade": "95", "price_cny": str(lowest)}, etag), range(2))
        )
    assert [r.status_code for r in both] == [202, 202], [r.text for r in both]
    third = both[0].json()["decision_id"]
    assert both[1].json()["decision_id"] == third
    # a feed (and its re-run) carrying the first price is held under the first decision
    settings = Settings(database_url=env.db_url, region="lijiang", shared_data_dir=shared_data)
    for _ in range(2):
        s = load_prices(_feed(tmp_path, [(sid, "95", cut)]), settings=settings, actor="feed:test")
        assert s.extra.get("held") == 1 and s.new == 0, s.render()
    assert _decisions(env, sid, "95") == [
        (held, "pending", str(cut)),
        (second, "pending", str(lower)),
        (third, "pending", str(lowest)),
    ]
    assert env.shown(sid)["95"] == float(usual["95"] + Decimal("0.05"))  # none of them is published


def test_an_approved_held_price_takes_effect_when_approved_never_before(
    env: PriceDesk, ceiling: dict[str, Decimal]
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    old = usual["95"] + Decimal("0.05")  # the last price of the history
    cut = anomalous(ceiling, "95")
    asked = datetime.now(TZ).replace(microsecond=0) - timedelta(hours=2)
    r = _put(env, sid, key, {"grade": "95", "price_cny": str(cut), "effective_from": asked.isoformat()})
    assert r.status_code == 202, r.text
    held = r.json()["decision_id"]
    ok = env.review(held, True, "confirmed by phone")
    assert ok.status_code == 200, ok.text
    approved_at = datetime.fromisoformat(ok.json()["reviewed_at"])
    # published from the approval on: the two hours before keep the price drivers were shown then
    rows = env.sql(
        "SELECT id, effective_from FROM prices WHERE station_id = %s AND grade = '95' AND price_cny = %s",
        sid,
        cut,
    )
    assert [ef for _, ef in rows] == [approved_at]
    with psycopg.connect(env.db_url) as conn:
        then = current_prices(conn, [sid], asked + timedelta(hours=1))[sid]["95"]
        current = current_prices(conn, [sid], datetime.now(TZ))[sid]["95"]
    assert (then.price_cny, current.price_cny) == (old, cut)
    assert env.shown(sid)["95"] == float(cut)
    # the decision keeps what was asked; the publication's audit row names both times
    action = env.sql("SELECT action -> 'publish_price' FROM risk_decisions WHERE id = %s", held)[0][0]
    assert datetime.fromisoformat(action["effective_from"]) == asked
    audit = env.sql(
        "SELECT actor, action, new_value FROM audit_log WHERE entity = 'price' AND entity_id = %s",
        str(rows[0][0]),
    )
    assert len(audit) == 1 and audit[0][:2] == ("price-desk", "create")
    new = audit[0][2]
    assert datetime.fromisoformat(new["effective_from"]) == approved_at
    assert datetime.fromisoformat(new["requested_effective_from"]) == asked
    assert new["decision_id"] == held
    review = env.sql(
        "SELECT new_value FROM audit_log WHERE entity = 'risk_decision' AND entity_id = %s", str(held)
    )[0][0]
    assert review["review_state"] == "approved"
    assert datetime.fromisoformat(review["published"]["effective_from"]) == approved_at
    assert datetime.fromisoformat(review["published"]["requested_effective_from"]) == asked


def test_approving_an_older_held_price_never_overrides_a_newer_one(
    env: PriceDesk, ceiling: dict[str, Decimal]
) -> None:
    usual = usual_prices(ceiling)
    sid, key = env.station(usual)
    cut = anomalous(ceiling, "95")
    held = _put(env, sid, key, {"grade": "95", "price_cny": str(cut)}).json()["decision_id"]
    # an ordinary change, published after the held one was asked (written directly: the neighbours of
    # this module's stations already show the approved cuts, so risk control would hold it too)
    step = usual["95"] + Decimal("0.08")
    with psycopg.connect(env.db_url) as conn:
        insert_price(conn, PriceIn(sid, "95", step, datetime.now(TZ)), zone=ZONE, actor="mgr")
    etag = env.etag(sid)
    r = env.review(held, True, "confirmed by phone")
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "NewerPriceExists" and str(step) in err["message"] and "reject" in err["message"]
    # nothing changed: the newer price stands, the decision still waits, no review was recorded
    assert env.shown(sid)["95"] == float(step) and env.etag(sid) == etag
    assert env.sql("SELECT count(*) FROM prices WHERE station_id = %s AND price_cny = %s", sid, cut) == [(0,)]
    assert (held, "pending", str(cut)) in _decisions(env, sid, "95")
    assert env.sql(
        "SELECT count(*) FROM audit_log WHERE entity = 'risk_decision' AND entity_id = %s", str(held)
    ) == [(0,)]
    assert env.review(held, False, "superseded").status_code == 200
    # two held prices: approving the newer publishes it; the older one then cannot replace it
    older = _put(env, sid, key, {"grade": "95", "price_cny": str(cut)}).json()["decision_id"]
    lower = cut - Decimal("0.10")
    newer = _put(env, sid, key, {"grade": "95", "price_cny": str(lower)}).json()["decision_id"]
    assert older != held and newer != older
    assert env.review(newer, True).status_code == 200
    r = env.review(older, True)
    assert r.status_code == 409 and str(lower) in r.json()["error"]["message"], r.text
    assert env.shown(sid)["95"] == float(lower)
    assert _decisions(env, sid, "95")[-2:] == [(older, "pending", str(cut)), (newer, "approved", str(lower))]
