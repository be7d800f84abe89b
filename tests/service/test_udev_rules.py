"""udev rules generated from the device profiles: every USB device a profile names gets a
rule, a new profile gets one without a hand edit, and values a rule cannot hold are
refused.

``udevadm`` is not installed on this machine (and systemd 252's has no ``verify``), so
the rules' syntax is checked here against udev's rule grammar (key, optional
``{attribute}``, operator, double-quoted value) instead; the rules have not been loaded
by a real udevd here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from edge_agent.profiles.loader import DEFAULT_PROFILES_DIR, load_profiles

EDGE_AGENT = Path(sys.executable).parent / "edge-agent"
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "SUBSYSTEMS", "ATTR", "ATTRS", "ENV"}
ASSIGN_KEYS = {"GROUP", "MODE", "IMPORT", "GOTO"}
_TOKEN = re.compile(
    r'^(?P<key>[A-Z]+)(\{(?P<attr>[A-Za-z_]+)\})?(?P<op>==|!=|=|\+=)"(?P<value>[^"]*)"$'
)


def _rules(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EDGE_AGENT), "service", "udev-rules", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def _parse(text: str) -> list[list[dict[str, str]]]:
    """Every rule line as its tokens; fails on anything udev's grammar would not take."""
    parsed = []
    for line in text.splitlines():
        if not line or line.startswith(("#", "LABEL=")):
            continue
        tokens = []
        for part in line.split(", "):
            found = _TOKEN.match(part)
            assert found, f"not a udev token: {part!r} in {line!r}"
            token = found.groupdict()
            if token["op"] in ("==", "!="):
                assert token["key"] in MATCH_KEYS, part
            else:
                assert token["key"] in ASSIGN_KEYS, part
            tokens.append(token)
        parsed.append(tokens)
    return parsed


def test_every_usb_device_of_every_profile_gets_its_rule() -> None:
    done = _rules()
    assert done.returncode == 0, done.stderr
    rules = _parse(done.stdout)
    device_rules = [r for r in rules if any(t["key"] == "GROUP" for t in r)]
    profiles = load_profiles(log_problems=False).profiles
    usb = [(p, m.usb) for p in profiles for m in p.match if m.usb is not None]
    assert len(device_rules) == len(usb)
    for (profile, rule), tokens in zip(sorted(usb, key=lambda x: x[0].id), device_rules,
                                       strict=True):  # fmt: skip
        # A token without an attribute (GROUP, MODE, SUBSYSTEM) has attr None.
        values: dict[tuple[str, str | None], str] = {
            (t["key"], t["attr"]): t["value"] for t in tokens
        }
        assert values[("GROUP", None)] == "govedge-devices"
        assert values[("MODE", None)] == "0660"
        node_key = ("SUBSYSTEM", None)
        assert values[node_key] == rule.subsystem, profile.id
        attr = "ATTR" if rule.subsystem == "usb" else "ATTRS"
        if rule.vendor_id:
            assert values[(attr, "idVendor")] == rule.vendor_id.lower()
        if rule.product_id:
            assert values[(attr, "idProduct")] == rule.product_id.lower()
        for name in ("product", "manufacturer", "serial"):
            patterns = getattr(rule, name)
            if patterns:
                assert values[(attr, name)].split("|") == list(patterns)
    # Network devices (printers on 9100, pads, LED screens) need no rule.
    network_only = [p.id for p in profiles if all(m.usb is None for m in p.match)]
    assert network_only
    assert not any(f"# {name}:" in done.stdout for name in network_only)


def test_a_new_profile_gets_its_rule_without_a_hand_edit(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    shutil.copytree(DEFAULT_PROFILES_DIR, profiles)
    source = (profiles / "caller-keypad.yaml").read_text()
    (profiles / "site-keypad.yaml").write_text(
        source.replace("id: caller-keypad", "id: site-keypad")
        .replace('vendor_id: "0403"', 'vendor_id: "1A86"')
        .replace('product_id: "6001"', 'product_id: "55D4"')
    )
    done = _rules("--profiles-dir", str(profiles), "--group", "outlet-hw")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if 'ATTRS{idProduct}=="55d4"' in x)
    assert 'ATTRS{idVendor}=="1a86"' in line
    assert 'GROUP="outlet-hw"' in line
    assert len(_parse(done.stdout)) == len(_parse(_rules().stdout)) + 1


def test_a_pattern_a_rule_cannot_hold_is_refused(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    source = (DEFAULT_PROFILES_DIR / "caller-keypad.yaml").read_text()
    (profiles / "caller-keypad.yaml").write_text(
        source.replace('product: ["*Caller*"', 'product: ["*Cal|ler*"')
    )
    done = _rules("--profiles-dir", str(profiles))
    assert done.returncode == 2
    assert "caller-keypad" in done.stderr
    assert done.stdout == ""
    bad_group = _rules("--group", "Bad Group")
    assert bad_group.returncode == 2
    assert "group" in bad_group.stderr
