"""Where the JavaScript client has drifted from the agent's OpenAPI document.

``drift(spec, dts, js)`` lists every difference a clerk app's developer would trip over:

- the client's ``ROUTES`` table against the document's operations (method and path),
  and each of its names a method that ``class GovedgeLocal`` in the ``.js`` defines and
  the ``.d.ts`` declares;
- every interface of the ``.d.ts`` that mirrors a schema, field by field: a property
  missing, a field the schema no longer has, required against optional (``?``), and
  the type (string, number, boolean, a string or number enumeration, array of what,
  object, a reference to which schema, nullable or not);
- an interface that is neither a schema nor one of the client's own types, and a schema
  an operation or another schema refers to without an interface.

It reads the TypeScript subset the ``.d.ts`` is written in (one ``name?: type;`` per
field, unions with ``|``, ``T[]``, ``Record<string, T>``); a declaration it cannot read
is itself reported, so a new construct cannot slip through unchecked.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CLIENT_ONLY", "class_methods", "drift", "interfaces", "routes"]

# Interfaces of the client itself, with no schema behind them.
CLIENT_ONLY = frozenset({"LocalDeviceEvent", "LocalPing", "EventStream", "GovedgeLocalOptions"})
# FastAPI's own error schemas: the client turns errors into GovedgeError instead.
ERROR_SCHEMAS = frozenset({"HTTPValidationError", "ValidationError"})
# The client's methods beyond one per route.
CLIENT_METHODS = frozenset({"request", "events"})

# A type as a set of alternatives: ("string",), ("literal", value), ("number",),
# ("boolean",), ("null",), ("array", items), ("object", values or None), ("ref", name),
# ("unknown",).
Atom = tuple[Any, ...]
Kind = frozenset[Atom]


def routes(js: str) -> list[tuple[str, str, str]]:
    """The client's ``ROUTES`` rows: (function name, method, path)."""
    table = js.split("export const ROUTES = [", 1)[1].split("];", 1)[0]
    return re.findall(r'\["(\w+)", "(GET|POST)", "([^"]+)"\]', table)


def class_methods(source: str, head: str) -> set[str]:
    """The public method names defined (``.js``) or declared (``.d.ts``) in the class
    that starts with ``head``: lines indented by two spaces that open a parameter list."""
    body = source.split(head, 1)[1]
    body = body.split("\n}", 1)[0]
    names = set(re.findall(r"^  (?:async )?([A-Za-z]\w*)(?:<[^>]*>)?\(", body, flags=re.M))
    return names - {"constructor"}


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def interfaces(dts: str) -> dict[str, dict[str, tuple[bool, str]]]:
    """Each ``export interface``: field name -> (optional, TypeScript type text)."""
    found: dict[str, dict[str, tuple[bool, str]]] = {}
    text = _strip_comments(dts)
    for name, body in re.findall(r"export interface (\w+) \{(.*?)\}\n", text, flags=re.S):
        fields: dict[str, tuple[bool, str]] = {}
        for part in body.split(";"):
            part = " ".join(part.split())
            if not part:
                continue
            field = re.fullmatch(r"(\w+)(\??): (.+)", part)
            if field is None:  # a method (EventStream.close) or something unread
                fields[part] = (False, "")
                continue
            fields[field[1]] = (field[2] == "?", field[3])
        found[name] = fields
    return found


def _split_union(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<([":
            depth += 1
        elif ch in ">)]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def ts_kind(text: str) -> Kind:
    """The alternatives of a TypeScript type; raises ``ValueError`` for one not read."""
    atoms: set[Atom] = set()
    for part in _split_union(text):
        if part.startswith("(") and part.endswith(")"):
            atoms |= ts_kind(part[1:-1])
        elif part in ("string", "number", "boolean", "null", "unknown"):
            atoms.add((part,))
        elif re.fullmatch(r'"[^"]*"', part):
            atoms.add(("literal", part[1:-1]))
        elif re.fullmatch(r"-?\d+(\.\d+)?", part):
            atoms.add(("literal", float(part)))
        elif part.endswith("[]"):
            atoms.add(("array", ts_kind(part[:-2])))
        elif record := re.fullmatch(r"Record<string, (.+)>", part):
            values = ts_kind(record[1])
            atoms.add(("object", None if values == {("unknown",)} else values))
        elif re.fullmatch(r"[A-Z]\w*", part):
            atoms.add(("ref", part))
        else:
            raise ValueError(f"a TypeScript type the drift check cannot read: {part!r}")
    return frozenset(atoms)


def schema_kind(schema: dict[str, Any]) -> Kind:
    """The alternatives of a JSON schema, in the terms of ``ts_kind``."""
    if "$ref" in schema:
        return frozenset({("ref", schema["$ref"].rsplit("/", 1)[1])})
    if "anyOf" in schema:
        return frozenset().union(*(schema_kind(s) for s in schema["anyOf"]))
    if not schema:
        return frozenset({("unknown",)})
    if "const" in schema or "enum" in schema:
        values = [schema["const"]] if "const" in schema else schema["enum"]
        if None in values:
            raise ValueError(f"an enumeration with null: {values}")
        return frozenset(("literal", float(v) if isinstance(v, int | float) else v) for v in values)
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return frozenset({("number",)})
    if kind in ("string", "boolean", "null"):
        return frozenset({(kind,)})
    if kind == "array":
        return frozenset({("array", schema_kind(schema.get("items", {})))})
    if kind == "object":
        extra = schema.get("additionalProperties")
        return frozenset({("object", schema_kind(extra) if isinstance(extra, dict) else None)})
    raise ValueError(f"a schema the drift check cannot read: {schema}")


def _show(kind: Kind) -> str:
    def one(atom: Atom) -> str:
        if atom[0] == "literal":
            value = atom[1]
            return (
                repr(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)
            )
        if atom[0] == "array":
            return f"({_show(atom[1])})[]"
        if atom[0] == "object":
            return "object" if atom[1] is None else f"Record<string, {_show(atom[1])}>"
        if atom[0] == "ref":
            return str(atom[1])
        return str(atom[0])

    return " | ".join(sorted(one(a) for a in kind))


def _refs(kind: Kind) -> set[str]:
    found: set[str] = set()
    for atom in kind:
        if atom[0] == "ref":
            found.add(atom[1])
        elif atom[0] in ("array", "object") and atom[1] is not None:
            found |= _refs(atom[1])
    return found


def _route_drift(spec: dict[str, Any], dts: str, js: str) -> list[str]:
    problems: list[str] = []
    table = routes(js)
    api = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1/")
        for method in item
    }
    listed = {(m, p) for _, m, p in table}
    problems += [f"ROUTES lacks {m} {p}" for m, p in sorted(api - listed)]
    problems += [
        f"ROUTES has {m} {p}, which the agent does not serve" for m, p in sorted(listed - api)
    ]
    defined = class_methods(js, "export class GovedgeLocal {")
    declared = class_methods(dts, "export declare class GovedgeLocal {")
    names = [name for name, _, _ in table]
    problems += [
        f"ROUTES names {n}, which class GovedgeLocal does not define"
        for n in names
        if n not in defined
    ]
    problems += [
        f"ROUTES names {n}, which the .d.ts does not declare" for n in names if n not in declared
    ]
    extra = declared - set(names) - CLIENT_METHODS
    problems += [
        f"the .d.ts declares {n}, which is neither a route nor {sorted(CLIENT_METHODS)}"
        for n in sorted(extra)
    ]
    problems += [
        f"the .d.ts declares {n}, which the .js does not define" for n in sorted(declared - defined)
    ]
    return problems


def _field_drift(
    name: str, schema: dict[str, Any], fields: dict[str, tuple[bool, str]]
) -> list[str]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    problems = [
        f"{name}.{prop} is in the schema, not in the .d.ts"
        for prop in sorted(properties.keys() - fields.keys())
    ]
    problems += [
        f"{name}.{field} is in the .d.ts, no longer in the schema"
        for field in sorted(fields.keys() - properties.keys())
    ]
    for prop in properties.keys() & fields.keys():
        optional, text = fields[prop]
        if optional == (prop in required):
            want = "required" if prop in required else "optional (?)"
            problems.append(f"{name}.{prop} must be {want}")
        try:
            declared = ts_kind(text)
            wanted = schema_kind(properties[prop])
        except ValueError as exc:
            problems.append(f"{name}.{prop}: {exc}")
            continue
        if declared != wanted:
            problems.append(f"{name}.{prop} is {text} in the .d.ts, {_show(wanted)} in the schema")
    return problems


def drift(spec: dict[str, Any], dts: str, js: str) -> list[str]:
    """Every difference between the client and the document; empty when in step."""
    problems = _route_drift(spec, dts, js)
    schemas: dict[str, Any] = spec["components"]["schemas"]
    declared = interfaces(dts)
    for name in sorted(declared.keys() - schemas.keys() - CLIENT_ONLY):
        problems.append(f"the .d.ts has interface {name}, which is no schema of the agent")
    wanted: set[str] = set()
    for item in spec["paths"].values():
        for op in item.values():
            wanted |= set(re.findall(r"#/components/schemas/(\w+)", str(op)))
    seen: set[str] = set()
    while wanted - seen:  # the operations' schemas and all they refer to
        name = sorted(wanted - seen)[0]
        seen.add(name)
        wanted |= set(re.findall(r"#/components/schemas/(\w+)", str(schemas.get(name, {}))))
    for name in sorted(seen - ERROR_SCHEMAS - {"ErrorBody"}):
        if name not in declared:
            problems.append(f"the .d.ts has no interface {name}")
    for name in sorted(declared.keys() & schemas.keys()):
        problems += _field_drift(name, schemas[name], declared[name])
        for field, (_, text) in declared[name].items():
            try:
                refs = _refs(ts_kind(text)) if text else set()
            except ValueError:
                continue  # reported by _field_drift
            problems += [
                f"{name}.{field} refers to {r}, which the .d.ts does not declare"
                for r in sorted(refs - declared.keys())
            ]
    return problems
