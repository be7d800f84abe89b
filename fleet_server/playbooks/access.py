"""What an outlet's access record (``PUT /api/v1/outlets/{id}/access``) may hold: an
allow-list, checked when it is set and again when a run's inventory is made.

Host vars reach Ansible on the fleet server, where the management SSH key lives, so a
free-form record would let whoever sets it run commands there: ``ansible_connection:
local`` or ``ansible_python_interpreter`` (local), ``ansible_ssh_common_args`` with ``-o
ProxyCommand=…`` or ``-o StrictHostKeyChecking=no`` (ssh keeps the first value of an
option), or a Jinja template (``{{ lookup('pipe', …) }}``: Ansible renders host and extra
vars, and lookups run on the controller). The record holds only:

- ``ansible_host`` (an IP address or a host name on the management network),
  ``ansible_port`` (1 to 65535), ``ansible_user`` (a POSIX user name);
- in ``host_vars``: ``ansible_connection`` (``ssh``; ``local`` only where the server
  allows it, ``GOVEDGE_PLAYBOOK_ALLOW_LOCAL``: a lab whose fleet server stands in for an
  outlet PC), ``ansible_python_interpreter`` (an absolute path on the PC), and the
  variables the offered playbooks' roles document (``meta/argument_specs.yml``), each
  checked against its spec; never one the fleet server supplies per run, nor the outlet
  id (the record's own).

No string anywhere in it may hold a template (``{{``, ``{%``, ``{#``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleet_server.playbooks import catalogue

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_INTERPRETER = re.compile(r"^/[A-Za-z0-9._+/-]{1,254}$")
# Role variables a record must not set per host: the fleet's own per-run ones (files on
# the server's disk, tokens) and the outlet id (the record is that outlet's).
_NOT_PER_HOST: Final = catalogue.FLEET_SUPPLIED | {"govedge_agent_outlet_id"}
CONNECTION_VARS: Final = ("ansible_connection", "ansible_python_interpreter")


class AccessError(ValueError):
    """A field of an access record that is not allowed (its name in ``field``)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.field = name


@dataclass(frozen=True, slots=True)
class Rules:
    """What records may hold on this server: the documented role variables (name →
    spec) and whether ``ansible_connection: local`` is allowed."""

    role_options: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    allow_local: bool = False


def rules_for(playbooks_dir: Path, *, allow_local: bool) -> Rules:
    """The rules of a server offering the playbooks of ``playbooks_dir``."""
    options: dict[str, dict[str, Any]] = {}
    for playbook in catalogue.catalogue(playbooks_dir):
        options.update(playbook.variables)
    return Rules(role_options=options, allow_local=allow_local)


def check_address(value: object) -> str:
    """An IP address or a host name (RFC 1123), else AccessError."""
    if isinstance(value, str) and 0 < len(value) <= 253:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            if all(_LABEL.match(label) for label in value.rstrip(".").split(".")):
                return value
    raise AccessError("ansible_host", "must be an IP address or a host name")


def check_user(value: object) -> str:
    """A POSIX user name (``[a-z_][a-z0-9_-]{0,31}``), else AccessError."""
    if isinstance(value, str) and _POSIX_USER.match(value):
        return value
    raise AccessError("ansible_user", "must be a POSIX user name ([a-z_][a-z0-9_-]{0,31})")


def check_port(value: object) -> int:
    """A TCP port, else AccessError."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    raise AccessError("ansible_port", "must be a port number from 1 to 65535")


def check_host_var(name: str, value: object, rules: Rules) -> None:
    """AccessError when ``host_vars[name] = value`` is not allowed."""
    where = f"host_vars.{name}"
    if name == "ansible_connection":
        allowed = ("ssh", "local") if rules.allow_local else ("ssh",)
        if value not in allowed:
            hint = "" if rules.allow_local else " (local is off: GOVEDGE_PLAYBOOK_ALLOW_LOCAL)"
            raise AccessError(where, f"must be one of {', '.join(allowed)}{hint}")
        return
    if name == "ansible_python_interpreter":
        if not isinstance(value, str) or not _INTERPRETER.match(value) or ".." in value:
            raise AccessError(where, "must be an absolute path on the outlet PC")
        return
    spec = rules.role_options.get(name)
    if name.startswith("ansible_") or spec is None:
        raise AccessError(
            where,
            "not allowed: an access record holds ansible_host, ansible_port, ansible_user, "
            "and in host_vars ansible_connection, ansible_python_interpreter and the "
            "variables the playbooks' roles document",
        )
    if name in _NOT_PER_HOST:
        raise AccessError(where, "set by the fleet server, not per outlet")
    if catalogue.templated(value):
        raise AccessError(where, "must not hold a template ({{, {% or {#)")
    problem = catalogue.value_problem(spec, value)
    if problem:
        raise AccessError(where, problem)


def check_record(
    *,
    ansible_host: object,
    ansible_port: object,
    ansible_user: object,
    host_vars: Mapping[str, Any],
    rules: Rules,
) -> None:
    """AccessError naming the first field of a record that is not allowed."""
    if ansible_host is not None:
        check_address(ansible_host)
    if ansible_port is not None:
        check_port(ansible_port)
    if ansible_user is not None:
        check_user(ansible_user)
    for name in sorted(host_vars):
        check_host_var(name, host_vars[name], rules)


def inventory_vars(
    outlet_id: str,
    *,
    ansible_host: object,
    ansible_port: object,
    ansible_user: object,
    host_vars: Mapping[str, Any],
    rules: Rules,
) -> dict[str, Any]:
    """A stored record as inventory host vars: only what the rules allow (a record kept
    from before them, or written past the API, loses the rest, with a warning)."""
    found: dict[str, Any] = {}
    dropped: list[str] = []
    for name in sorted(host_vars):
        try:
            check_host_var(name, host_vars[name], rules)
        except AccessError:
            dropped.append(name)
        else:
            found[name] = host_vars[name]
    checks = (("ansible_host", ansible_host, check_address),
              ("ansible_port", ansible_port, check_port),
              ("ansible_user", ansible_user, check_user))  # fmt: skip
    for name, value, check in checks:
        if value is None:
            continue
        try:
            found[name] = check(value)
        except AccessError:
            dropped.append(name)
    if dropped:
        # names only: a value may be anything
        log.warning("outlet %s: access vars left out of the inventory: %s", outlet_id,
                    ", ".join(dropped))  # fmt: skip
    return found
