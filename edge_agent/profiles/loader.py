"""Load and check the device-profile files: each problem located by file, line and field.

A broken file never stops the others: ``load_profiles`` returns every profile that passed
all checks plus the problems of the rest. Checks, in order: the file reads as UTF-8, it is
YAML (syntax error line), no mapping repeats a key, it satisfies ``schema.json`` (each
JSON-Schema error path mapped to a line through the YAML node tree; skipped for a text
the agent's ``SchemaMemo`` saw pass this schema before, whose parsed data it also keeps:
such a text is not parsed again unless a problem needs a line), the typed model
accepts it, a generic USB-serial bridge id is never the whole rule; then across files: ids
are unique, every driver name is registered, and the ``settings`` fit that driver's
settings model (unknown keys and bad values are located like every other problem).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pydantic

from edge_agent.profiles.bridges import is_generic_bridge
from edge_agent.profiles.models import Profile, ProfileProblem, ProfileSet
from edge_agent.profiles.schema_memo import SchemaMemo
from edge_agent.profiles.yamlsrc import ParsedYaml, YamlSyntaxError, field_name, line_of, parse

if TYPE_CHECKING:
    import jsonschema

log = logging.getLogger(__name__)

DEFAULT_PROFILES_DIR: Final = Path(__file__).resolve().parents[2] / "device_profiles"
SCHEMA_PATH: Final = DEFAULT_PROFILES_DIR / "schema.json"
PROFILE_SUFFIXES: Final = (".yaml", ".yml")
_REQUIRED_RE: Final = re.compile(r"^'(?P<name>[^']+)' is a required property$")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    # Imported on the first schema check only: an agent whose profiles passed before
    # starts without it (~3 MiB, ``schema_memo``).
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def profile_files(path: Path) -> list[Path]:
    """The profile files at ``path``: the file itself, or ``*.yaml``/``*.yml`` in a folder."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix in PROFILE_SUFFIXES and p.is_file())
    return [path]


def load_profiles(
    path: Path | None = None,
    *,
    driver_names: Collection[str] | None = None,
    log_problems: bool = True,
    schema_memo: Path | None = None,
) -> ProfileSet:
    """Load every profile under ``path`` (default: the shipped ``device_profiles/``).

    ``driver_names`` are the registered drivers to check against; None asks the driver
    registry. Profiles with any problem are left out; the problems say why, and are
    logged as warnings unless ``log_problems`` is false (the check command prints them).
    ``schema_memo`` is the file of the texts that passed the schema before (the agent's
    ``DATA_DIR/profiles-checked.json``); None checks every file against it.
    """
    memo = None if schema_memo is None else SchemaMemo(schema_memo, schema=SCHEMA_PATH.read_bytes())
    root = DEFAULT_PROFILES_DIR if path is None else path
    problems: list[ProfileProblem] = []
    loaded: list[tuple[Profile, ParsedYaml]] = []
    if not root.exists():
        problems.append(ProfileProblem(file=root, line=None, field="<file>", message="not found"))
    else:
        for file in profile_files(root):
            profile, parsed, file_problems = _load_file(file, memo)
            problems.extend(file_problems)
            if profile is not None and parsed is not None:
                loaded.append((profile, parsed))
    good, cross_problems = _cross_check(loaded, root=root, driver_names=driver_names)
    problems.extend(cross_problems)
    for problem in problems if log_problems else ():
        log.warning("device profile problem: %s", problem)
    if memo is not None:
        memo.save()
    return ProfileSet(profiles=tuple(good), problems=tuple(problems))


def check_profiles(
    path: Path | None = None, *, driver_names: Collection[str] | None = None
) -> list[ProfileProblem]:
    """Every problem of the profiles under ``path``, in file and line order."""
    return list(load_profiles(path, driver_names=driver_names, log_problems=False).problems)


def _load_file(
    file: Path, memo: SchemaMemo | None
) -> tuple[Profile | None, ParsedYaml | None, list[ProfileProblem]]:
    def problem(line: int | None, where: str, message: str) -> ProfileProblem:
        return ProfileProblem(file=file, line=line, field=where, message=message)

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, None, [problem(None, "<file>", f"cannot read: {exc}")]
    # A text that passed before: its data from the memo, without YAML (schema_memo).
    remembered = memo.parsed(text) if memo is not None else None
    if remembered is not None:
        parsed = remembered
    else:
        try:
            parsed = parse(text)
        except YamlSyntaxError as exc:
            return None, None, [problem(exc.line, "<yaml>", f"YAML syntax error: {exc.message}")]
        problems = [
            problem(line, field_name(path), "duplicate key; YAML would keep only the last one")
            for path, line in parsed.duplicate_keys
        ]
        if problems or memo is None or not memo.passed(text):
            problems += [
                problem(line_of(parsed.root, path), where, message)
                for path, where, message in _schema_errors(parsed.data)
            ]
            if problems:
                return None, parsed, problems
        if memo is not None:
            memo.remember(text, parsed.data)
    try:
        profile = Profile.model_validate({**_as_dict(parsed.data), "source": file})
    except pydantic.ValidationError as exc:
        return (
            None,
            parsed,
            [
                problem(line_of(parsed.root, err["loc"]), field_name(err["loc"]), err["msg"])
                for err in exc.errors()
            ],
        )
    problems = [
        problem(line_of(parsed.root, path), field_name(path), message)
        for path, message in _rule_problems(profile)
    ]
    return (None if problems else profile), parsed, problems


def _as_dict(data: object) -> dict[str, Any]:
    return dict(data) if isinstance(data, dict) else {}


def _schema_errors(data: object) -> Iterable[tuple[list[str | int], str, str]]:
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.path])
    reported: set[str] = set()
    for error in errors:
        path: list[str | int] = list(error.absolute_path)
        message = error.message
        if error.validator != "required":
            # One message per field: "7 is not a string" makes "not one of [...]" noise.
            if field_name(path) in reported:
                continue
            reported.add(field_name(path))
        if error.validator == "required" and (found := _REQUIRED_RE.match(message)):
            yield path, field_name([*path, found["name"]]), "required field is missing"
            continue
        if error.validator == "type" and path and path[-1] in {"vendor_id", "product_id"}:
            message += ' (write USB ids as quoted hex: "0400", "c35a")'
        if len(message) > 200:
            message = message[:197] + "..."
        yield path, field_name(path), message


def _rule_problems(profile: Profile) -> Iterable[tuple[list[str | int], str]]:
    for index, rule in enumerate(profile.match):
        usb = rule.usb
        if usb is None:
            continue
        if is_generic_bridge(usb.vendor_id, usb.product_id) and not usb.has_string_rule:
            yield (
                ["match", index, "usb"],
                f"{usb.vendor_id}:{usb.product_id or '*'} is a generic USB-serial bridge; "
                "add a product, manufacturer, serial or port_path pattern",
            )
        if not (usb.vendor_id or usb.interface_class or usb.kernel_driver or usb.has_string_rule):
            yield (
                ["match", index, "usb"],
                "rule matches every device of its subsystem; pin a vendor_id, "
                "interface_class or string pattern",
            )


def _cross_check(
    loaded: list[tuple[Profile, ParsedYaml]],
    *,
    root: Path,
    driver_names: Collection[str] | None,
) -> tuple[list[Profile], list[ProfileProblem]]:
    problems: list[ProfileProblem] = []
    known, registry_problem = _known_drivers(driver_names)
    if registry_problem is not None:
        problems.append(
            ProfileProblem(file=root, line=None, field="driver", message=registry_problem)
        )
    # Lines are looked up only for a problem: a remembered profile's node tree is parsed
    # only then (yamlsrc.ParsedYaml.remembered).
    first: dict[str, tuple[Path, ParsedYaml]] = {}
    good: list[Profile] = []
    for profile, parsed in loaded:
        file = profile.source or root
        if profile.id in first:
            other_file, other = first[profile.id]
            problems.append(
                ProfileProblem(
                    file=file,
                    line=line_of(parsed.root, ["id"]),
                    field="id",
                    message=f"duplicate id {profile.id!r} (first defined in "
                    f"{other_file.name}:{line_of(other.root, ['id'])})",
                )
            )
            continue
        first[profile.id] = (file, parsed)
        if known is not None and profile.driver not in known:
            problems.append(
                ProfileProblem(
                    file=file,
                    line=line_of(parsed.root, ["driver"]),
                    field="driver",
                    message=f"unknown driver {profile.driver!r}; registered: "
                    f"{', '.join(sorted(known)) or '(none)'}",
                )
            )
            continue
        settings = [
            ProfileProblem(
                file=file,
                line=line_of(parsed.root, ["settings", *path]),
                field=where,
                message=message,
            )
            for path, where, message in _settings_problems(profile)
        ]
        if settings:
            problems.extend(settings)
            continue
        good.append(profile)
    return good, problems


def _settings_problems(profile: Profile) -> Iterable[tuple[tuple[int | str, ...], str, str]]:
    """The profile's ``settings`` checked against its driver's settings model."""
    try:
        from edge_agent.devices import driver_class
        from edge_agent.devices.settings import DriverSettings, settings_problems

        model = driver_class(profile.driver).settings_model or DriverSettings
    except (ImportError, SyntaxError, KeyError):
        return ()  # the driver-name check above reports what is wrong with the driver
    return list(settings_problems(model, profile.settings))


def _known_drivers(names: Collection[str] | None) -> tuple[frozenset[str] | None, str | None]:
    if names is not None:
        return frozenset(names), None
    try:
        from edge_agent.devices import driver_names

        return frozenset(driver_names()), None
    except (ImportError, SyntaxError) as exc:
        # Drivers are written in parallel; a half-finished module must not hide the
        # profile problems, so the check goes on without driver names and says so.
        return None, (
            f"driver names not checked: a driver module failed to import "
            f"({type(exc).__name__}: {exc})"
        )
