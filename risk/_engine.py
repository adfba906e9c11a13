"""Rules as data, evaluated with `rule-engine` (pinned in pyproject).

Why rule-engine rather than zen-engine: our rules are one-line typed boolean expressions over a flat dict of
facts ("amount_fen > 300000", "litres > tank_litres * 1.2"), which rule-engine parses once into a Python
AST and evaluates in microseconds, with no JSON decision-graph format to keep and review, no native
extension to build, and syntax errors found when a rule is loaded (a bad override is refused at write time).
The order of evaluation and the outcome (the most severe rule that fired wins) are ours, below.

Before the rules, two checks that no rule can override:
- no fuel, no pay: at `pay`, a sale whose nozzle totaliser did not move by its volume is denied;
- the deny list denies; the allow list lets a subject past `review` rules (never past a deny).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rule_engine

from risk._errors import InvalidRule
from risk._model import OUTCOMES, POINTS, Decision, Fired, Rule, worst

_CONTEXT = rule_engine.Context(default_value=None)
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.")

NO_FUEL_NO_PAY = Fired(
    "no_fuel_no_pay",
    "deny",
    "no fuel, no pay: the nozzle's totaliser did not move by the sale's volume",
    "totaliser_delta_ml != volume_ml",
)


def _deny_listed(subjects: Iterable[str]) -> Fired:
    names = ", ".join(sorted(subjects))
    return Fired("deny_list", "deny", f"on the deny list: {names}", "deny_listed")


def _allow_listed(subjects: Iterable[str]) -> Fired:
    names = ", ".join(sorted(subjects))
    return Fired("allow_list", "allow", f"on the allow list ({names}): reviews waived", "allow_listed")


def validate_rule(rule: Rule) -> rule_engine.Rule:
    """The compiled rule; InvalidRule naming what is wrong."""
    if not (2 <= len(rule.name) <= 64 and set(rule.name) <= NAME_CHARS and rule.name[0].isalpha()):
        raise InvalidRule(f"rule name {rule.name!r}: 2-64 of a-z 0-9 _ . starting with a letter")
    if rule.point not in POINTS:
        raise InvalidRule(f"rule {rule.name}: point must be one of {', '.join(POINTS)}, not {rule.point!r}")
    if rule.outcome not in OUTCOMES:
        raise InvalidRule(f"rule {rule.name}: outcome must be one of {', '.join(OUTCOMES)}")
    if not 1 <= len(rule.expr) <= 2000 or not 1 <= len(rule.reason) <= 300:
        raise InvalidRule(f"rule {rule.name}: expr 1-2000 and reason 1-300 characters")
    try:
        return rule_engine.Rule(rule.expr, context=_CONTEXT)
    except rule_engine.errors.EngineError as exc:
        raise InvalidRule(f"rule {rule.name}: {exc.message}: {rule.expr!r}") from None


@dataclass(frozen=True)
class RuleSet:
    """Compiled rules per point, in file order then override order; `version` names exactly this set."""

    version: str
    rules: tuple[Rule, ...]
    compiled: Mapping[str, tuple[tuple[Rule, rule_engine.Rule], ...]]

    @classmethod
    def build(
        cls, file_rules: Iterable[Rule], overrides: Iterable[tuple[Rule, bool]], version: str
    ) -> RuleSet:
        """File rules, then the database's overrides: a row of the same name replaces the file's rule
        (or switches it off with enabled=false); a new name adds a rule."""
        by_name: dict[str, Rule] = {}
        for r in file_rules:
            by_name[r.name] = r
        for r, enabled in overrides:
            if enabled:
                by_name[r.name] = r
            else:
                by_name.pop(r.name, None)
        rules = tuple(by_name.values())
        compiled: dict[str, list[tuple[Rule, rule_engine.Rule]]] = {p: [] for p in POINTS}
        for r in rules:
            checked = validate_rule(r)
            compiled[r.point].append((r, checked))
        return cls(version, rules, {p: tuple(v) for p, v in compiled.items()})


def parse_rules_file(text: str) -> tuple[str, list[Rule]]:
    """(the file's version, its rules) from data/risk/rules.json; InvalidRule when malformed."""
    try:
        doc = json.loads(text)
        version = str(doc["version"])
        rules = [
            Rule(str(r["name"]), str(r["point"]), str(r["expr"]), str(r["outcome"]), str(r["reason"]))
            for r in doc["rules"]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRule(f"the rules file is malformed: {exc}") from None
    for r in rules:
        validate_rule(r)
    return f"{version}+{hashlib.sha256(text.encode()).hexdigest()[:8]}", rules


def decide(
    ruleset: RuleSet,
    point: str,
    facts: Mapping[str, Any],
    *,
    deny_listed: Iterable[str] = (),
    allow_listed: Iterable[str] = (),
) -> Decision:
    """The decision at `point` for `facts` (pure). A rule whose facts are missing or of the wrong type does
    not fire. Every fired rule is listed; the most severe outcome wins."""
    if point not in POINTS:
        raise InvalidRule(f"point must be one of {', '.join(POINTS)}")
    fired: list[Fired] = []
    if point == "pay" and facts.get("totaliser_delta_ml") != facts.get("volume_ml"):
        fired.append(NO_FUEL_NO_PAY)
    denied, allowed = sorted(set(deny_listed)), sorted(set(allow_listed))
    if denied:
        fired.append(_deny_listed(denied))
    for rule, compiled in ruleset.compiled.get(point, ()):
        try:
            hit = compiled.matches(facts)
        except rule_engine.errors.EngineError:
            hit = False
        if hit:
            fired.append(Fired(rule.name, rule.outcome, rule.reason, rule.expr))
    outcome = worst([f.outcome for f in fired])
    if outcome == "review" and allowed:
        fired.append(_allow_listed(allowed))
        outcome = "allow"
    return Decision(point, outcome, tuple(fired), dict(facts), ruleset.version)
