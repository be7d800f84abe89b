"""Every alert rule the server knows has a display name in zh-CN and in English: the
alerts page, the rule editor and the playbook targets show ``r_<rule>`` from the UI's
string table and would otherwise fall back to the bare identifier."""

from __future__ import annotations

import re
from pathlib import Path

import fleet_server.alerts
from fleet_server.alerts.rules import DEFAULT_RULES, RULE_NAMES
from fleet_server.web.i18n import LANGS, table

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_every_rule_has_a_name_in_both_languages() -> None:
    zh, en = table("zh"), table("en")
    assert set(LANGS) == {"zh", "en"}
    missing = [rule for rule in RULE_NAMES if f"r_{rule}" not in zh]
    assert not missing, f"rules without a display name: {missing}"
    for rule in RULE_NAMES:
        chinese, english = zh[f"r_{rule}"], en[f"r_{rule}"]
        assert CJK.search(chinese), f"{rule}: zh name {chinese!r} is not Chinese"
        assert english, rule
        assert english != rule, f"{rule}: the English name is the identifier"
        assert not CJK.search(english), f"{rule}: en name {english!r} is not English"


def test_every_rule_an_alert_is_opened_under_is_a_known_rule() -> None:
    """Alerts opened outside the per-outlet conditions (campaigns, upstream breakers)
    name their rule in the code: each must be one of the rules, so it gets its name."""
    package = Path(fleet_server.alerts.__file__).parent
    named = {
        match
        for source in package.glob("*.py")
        for match in re.findall(r'rule="([a-z0-9_]+)"', source.read_text(encoding="utf-8"))
    }
    assert named, "no rule named in fleet_server/alerts"
    assert named <= set(DEFAULT_RULES), named - set(DEFAULT_RULES)
