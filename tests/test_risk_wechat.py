"""WeChat's getuserriskrank through our adapter (wechat.user_risk_rank), against the fake WeChat server in
its own process (`python -m wechat fake`): ranks, the access_token it needs, and failures that leave risk
control to decide without it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from risk import RuleSet, decide, parse_rules_file
from store._risk import RULES_FILE
from tests._servers import TEST_WECHAT_APP_SECRET, TEST_WECHAT_APPID, FakeWeChat
from wechat import WeChatClient, WeChatUnavailable, user_risk_rank


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWeChat]:
    f = FakeWeChat()
    try:
        yield f
    finally:
        f.close()


def test_risk_ranks_from_the_fake_feed_the_bind_rules(fake: FakeWeChat) -> None:
    client = WeChatClient(fake.base, TEST_WECHAT_APPID, TEST_WECHAT_APP_SECRET)
    version, rules = parse_rules_file(RULES_FILE.read_text(encoding="utf-8"))
    rs = RuleSet.build(rules, [], version)
    outcomes = {}
    for openid, rank in (("oCalm", 0), ("oShady", 3), ("oStolen", 4)):
        r = httpx.post(f"{fake.base}/fake/risk_ranks", json={"openid": openid, "risk_rank": rank}, timeout=5)
        assert r.status_code == 200
        got = user_risk_rank(client, openid, client_ip="10.0.0.1")
        assert got == rank
        outcomes[openid] = decide(rs, "bind", {"wechat_risk_rank": got}).outcome
    assert outcomes == {"oCalm": "allow", "oShady": "review", "oStolen": "deny"}
    assert user_risk_rank(client, "oNeverSeen", client_ip="10.0.0.1", scene="register") == 0
    client.close()


def test_a_bad_secret_or_an_unreachable_wechat_is_unavailable(fake: FakeWeChat) -> None:
    wrong = WeChatClient(fake.base, TEST_WECHAT_APPID, "not-the-secret")
    with pytest.raises(WeChatUnavailable, match="access_token"):
        user_risk_rank(wrong, "oCalm", client_ip="10.0.0.1")
    down = WeChatClient("http://127.0.0.1:1", TEST_WECHAT_APPID, TEST_WECHAT_APP_SECRET, timeout_s=0.5)
    with pytest.raises(WeChatUnavailable):
        user_risk_rank(down, "oCalm", client_ip="10.0.0.1")
    unconfigured = WeChatClient(fake.base, "", "")
    with pytest.raises(WeChatUnavailable, match="not configured"):
        user_risk_rank(unconfigured, "oCalm", client_ip="10.0.0.1")


def test_the_fake_refuses_a_token_it_did_not_issue(fake: FakeWeChat) -> None:
    r = httpx.post(
        f"{fake.base}/wxa/getuserriskrank",
        params={"access_token": "forged"},
        json={"appid": TEST_WECHAT_APPID, "openid": "oCalm", "scene": 1, "client_ip": "10.0.0.1"},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["errcode"] == 40001
