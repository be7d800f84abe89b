"""The playbooks offered: top-level ``*.yml``/``*.yaml`` files of the playbooks dir, each
with the variables its roles document in ``roles/<role>/meta/argument_specs.yml``
(entry point ``main``), and the check of a run's ``extra_vars`` against them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\.ya?ml$")
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "path": (str,),
}


# Variables the fleet server fills in for a run (fleet_vars.py), never the caller: files
# on the server's disk, a one-time token per host, where fetched archives land.
FLEET_SUPPLIED: Final = frozenset({
    "govedge_agent_release_file",
    "govedge_agent_release_manifest",
    "govedge_agent_config_keys_file",
    "govedge_agent_enroll_token",
    "govedge_agent_archive_dir",
})  # fmt: skip


class PlaybookError(ValueError):
    """A playbook that does not exist or can't be read, or extra vars it refuses."""


@dataclass(frozen=True, slots=True)
class Playbook:
    """One playbook and its documented variables (empty: none documented)."""

    name: str
    path: Path
    description: str
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def documented(self) -> bool:
        """Whether any role documents its variables (then unknown ones are refused)."""
        return bool(self.variables)


_IMPORTS = ("import_role", "include_role", "ansible.builtin.import_role",
            "ansible.builtin.include_role")  # fmt: skip


def _roles_of(plays: Any) -> list[tuple[str, str]]:
    """(role, entry point) of each play's ``roles:`` (entry ``main``) and of its tasks'
    ``import_role``/``include_role`` (entry ``tasks_from``, else ``main``)."""
    roles: list[tuple[str, str]] = []
    for play in plays if isinstance(plays, list) else []:
        if not isinstance(play, dict):
            continue
        for role in play.get("roles", []) or []:
            name = role.get("role") or role.get("name") if isinstance(role, dict) else role
            if isinstance(name, str):
                roles.append((name, "main"))
        for section in ("pre_tasks", "tasks", "post_tasks"):
            for task in play.get(section, []) or []:
                for key in _IMPORTS:
                    args = task.get(key) if isinstance(task, dict) else None
                    if isinstance(args, dict) and isinstance(args.get("name"), str):
                        roles.append((args["name"], str(args.get("tasks_from") or "main")))
    return roles


def _role_options(root: Path, role: str, entry: str) -> dict[str, dict[str, Any]]:
    for name in ("argument_specs.yml", "argument_specs.yaml"):
        spec = root / "roles" / role / "meta" / name
        if spec.is_file():
            data = yaml.safe_load(spec.read_text(encoding="utf-8")) or {}
            main = (data.get("argument_specs") or {}).get(entry) or {}
            return {k: dict(v or {}) for k, v in (main.get("options") or {}).items()}
    return {}


def load(root: Path, name: str) -> Playbook:
    """One playbook by file name; PlaybookError when it is not offered."""
    path = root / name
    if not _NAME.match(name) or not path.is_file():
        raise PlaybookError(f"no playbook {name!r} in the playbooks dir")
    try:
        plays = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlaybookError(f"playbook {name!r} is not valid YAML: {exc}") from None
    variables: dict[str, dict[str, Any]] = {}
    for role, entry in _roles_of(plays):
        variables.update(_role_options(root, role, entry))
    first = plays[0] if isinstance(plays, list) and plays and isinstance(plays[0], dict) else {}
    return Playbook(name, path, str(first.get("name", "")), variables)


def catalogue(root: Path) -> list[Playbook]:
    """Every playbook offered, by name; one that can't be read is left out."""
    found = []
    for path in sorted(root.glob("*.y*ml")) if root.is_dir() else []:
        try:
            found.append(load(root, path.name))
        except PlaybookError:
            continue
    return found


def value_problem(spec: dict[str, Any], value: object) -> str | None:
    """What is wrong with ``value`` for an option of ``spec`` (type, choices), or None."""
    wanted = _TYPES.get(str(spec.get("type", "str")))
    wrong_bool = isinstance(value, bool) and spec.get("type", "str") in ("int", "float")
    if wanted is not None and (not isinstance(value, wanted) or wrong_bool):
        return f"must be {spec.get('type', 'str')}"
    if "choices" in spec and value not in spec["choices"]:
        return f"must be one of {spec['choices']}"
    return None


# A name Ansible treats as its own (connection settings, magic variables): an extra var
# outranks every host var, so ``ansible_ssh_common_args`` there would undo the server's
# host-key pinning and ``ansible_connection: local`` would run on the fleet server.
_OWN_NAME = re.compile(r"^(ansible_|hostvars$|groups$|group_names$|inventory_|omit$|"
                       r"play_hosts$|playbook_dir$|role_|environment$|vars$)")  # fmt: skip
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TEMPLATE = re.compile(r"\{\{|\{%|\{#")


def templated(value: object) -> bool:
    """Whether a string anywhere in ``value`` (dict keys too) holds a Jinja template."""
    if isinstance(value, str):
        return bool(_TEMPLATE.search(value))
    if isinstance(value, dict):
        return any(templated(k) or templated(v) for k, v in value.items())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def check_extra_vars(playbook: Playbook, extra_vars: dict[str, Any]) -> None:
    """PlaybookError naming every problem when ``extra_vars`` break the documented spec:
    a missing required variable, an unknown one, a wrong type or a value not in choices;
    on any playbook, a name of Ansible's own or a value holding a Jinja template (Ansible
    would render it on the fleet server: ``{{ lookup('pipe', …) }}`` runs a command)."""
    supplied = sorted(FLEET_SUPPLIED.intersection(extra_vars))
    problems = [f"{name}: set by the fleet server for each run, not by the caller"
                for name in supplied]  # fmt: skip
    for name, value in extra_vars.items():
        if not _IDENTIFIER.match(name) or _OWN_NAME.match(name):
            problems.append(f"{name[:64]}: not a variable a run may set")
        elif templated(value):
            problems.append(f"{name}: must not hold a template ({{{{, {{% or {{#)")
    if not playbook.documented:
        if problems:
            raise PlaybookError("; ".join(problems))
        return
    for name, wanted_spec in playbook.variables.items():
        if wanted_spec.get("required") and name not in extra_vars and name not in FLEET_SUPPLIED:
            problems.append(f"{name}: required")
    for name, value in extra_vars.items():
        spec = playbook.variables.get(name)
        if name in FLEET_SUPPLIED or not _IDENTIFIER.match(name) or _OWN_NAME.match(name):
            continue  # said above
        if spec is None:
            problems.append(f"{name}: not a variable of {playbook.name}")
            continue
        problem = value_problem(spec, value)
        if problem:
            problems.append(f"{name}: {problem}")
    if problems:
        raise PlaybookError("; ".join(problems))


MASK: Final = "********"
# Names that look like secrets: these words anywhere in the name, or ``key`` as a word of
# it (``ssh_key``, ``api-key``; not ``keys_dir`` or ``monkey``).
_SECRET_WORDS = re.compile(r"password|passwd|passphrase|secret|token|credential", re.I)
_KEY_WORD = re.compile(r"(?:^|[^A-Za-z])key(?:$|[^A-Za-z])", re.I)


def secret_name(name: str) -> bool:
    """Whether a variable's name looks like it holds a secret."""
    return bool(_SECRET_WORDS.search(name) or _KEY_WORD.search(name))


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if secret_name(str(k)) else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def masked_vars(playbook: Playbook, extra_vars: dict[str, Any]) -> dict[str, Any]:
    """``extra_vars`` as they may be shown (audit, run detail): the value of every option
    the playbook's spec marks ``no_log``, and of every name that looks like a secret (at
    any depth), replaced by ``MASK``."""
    hidden = {name for name, spec in playbook.variables.items() if spec.get("no_log")}
    return {
        name: MASK if name in hidden or secret_name(name) else _masked(value)
        for name, value in extra_vars.items()
    }
