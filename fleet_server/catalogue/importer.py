"""Parse a catalogue file (CSV or JSON) into validated rows, and import them at once.

Columns / keys (docs/transactions.md): ``code`` (实施编码), ``base_code`` (基本编码),
``name``, ``level`` (行使层级 1-7), ``handling_type`` (``instant``/``promised`` or
即办件/承诺件 or 1/2), ``promised_days``, ``department``, ``outlet_kinds`` and
``region_codes`` (lists; ``;``-separated in CSV), ``handling_mode`` (``direct``/
``agency`` or 直办/代办), ``target`` (an upstream target name). Every problem is
reported as ``row N, field F: message`` (row 1 is the first data row) and a file with
any problem imports nothing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from fleet_server.models import CatalogueItem

__all__ = [
    "CatalogueError", "CatalogueRow", "RowError", "RowsError", "import_rows", "parse_catalogue",
    "read_records", "split_list", "validate_rows",
]  # fmt: skip

_HANDLING_TYPES: Final = {
    "instant": "instant",
    "即办件": "instant",
    "1": "instant",
    "promised": "promised",
    "承诺件": "promised",
    "2": "promised",
}
_HANDLING_MODES: Final = {
    "direct": "direct",
    "直办": "direct",
    "agency": "agency",
    "代办": "agency",
}
_MAX_ROWS: Final = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RowError:
    """One problem: ``row`` is 1-based over data rows (0 for the file as a whole)."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, field {self.field}: {self.message}"


class RowsError(ValueError):
    """A file cannot be imported; ``errors`` lists every problem found."""

    what = "file"

    def __init__(self, errors: Sequence[RowError]) -> None:
        self.errors = list(errors)
        shown = "; ".join(str(error) for error in self.errors[:10])
        more = f" (and {len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"{len(self.errors)} {self.what} errors: {shown}{more}")


class CatalogueError(RowsError):
    """The catalogue file cannot be imported."""

    what = "catalogue"


def split_list(value: Any) -> Any:
    """A list cell: ``a;b`` (or ``a|b``) as ``["a", "b"]``; anything else as it is."""
    if isinstance(value, str):
        return [part.strip() for part in value.replace("|", ";").split(";") if part.strip()]
    return value


class CatalogueRow(BaseModel):
    """One service item as implemented in some regions."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.\-]+$")]
    base_code: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_.\-]+$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    level: Annotated[int, Field(ge=1, le=7)]
    handling_type: Literal["instant", "promised"]
    promised_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    department: Annotated[str, Field(min_length=1, max_length=200)]
    outlet_kinds: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list
    )
    region_codes: list[Annotated[str, Field(pattern=r"^[0-9]{2,12}$")]] = Field(min_length=1)
    handling_mode: Literal["direct", "agency"] = "direct"
    target: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("handling_type", mode="before")
    @classmethod
    def _handling_type(cls, value: Any) -> Any:
        return _HANDLING_TYPES.get(str(value).strip(), value)

    @field_validator("handling_mode", mode="before")
    @classmethod
    def _handling_mode(cls, value: Any) -> Any:
        if value in (None, ""):
            return "direct"
        return _HANDLING_MODES.get(str(value).strip(), value)

    @field_validator("outlet_kinds", "region_codes", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return split_list(value)

    @field_validator("promised_days", mode="before")
    @classmethod
    def _empty_days(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _promised_needs_days(self) -> CatalogueRow:
        if self.handling_type == "promised" and self.promised_days is None:
            raise ValueError("promised_days is required for a promised item (承诺件)")
        return self


def read_records(data: bytes, *, fmt: str, list_key: str = "items") -> list[dict[str, Any]]:
    """The file's rows as dicts: CSV with a header row, or JSON as a list of objects or
    ``{list_key: [...]}``; a file that is neither, or has no rows or too many, raises
    ``RowsError`` (row 0)."""
    records = _records(data, fmt=fmt, list_key=list_key)
    if len(records) > _MAX_ROWS:
        raise RowsError([RowError(row=0, field="file", message="too many rows")])
    if not records:
        raise RowsError([RowError(row=0, field="file", message="no rows")])
    return records


Row = TypeVar("Row", bound=BaseModel)


def validate_rows(
    records: Sequence[dict[str, Any]], model: type[Row], *, fmt: str, key: str
) -> tuple[list[tuple[int, Row]], list[RowError]]:
    """Each record as ``model`` with its row number, and the problems: a field that does
    not validate, or the ``key`` field's value given twice."""
    rows: list[tuple[int, Row]] = []
    errors: list[RowError] = []
    seen: dict[Any, int] = {}
    for number, record in enumerate(records, start=1):
        cleaned = {
            name.strip(): value
            for name, value in record.items()
            if name is not None and not (fmt == "csv" and value is None)
        }
        try:
            row = model.model_validate(cleaned)
        except ValidationError as exc:
            for error in exc.errors():
                field = ".".join(str(part) for part in error["loc"]) or "row"
                message = error["msg"].removeprefix("Value error, ")
                errors.append(RowError(row=number, field=field, message=message))
            continue
        value = getattr(row, key)
        if value in seen:
            errors.append(
                RowError(row=number, field=key, message=f"duplicate of row {seen[value]}")
            )
        seen.setdefault(value, number)
        rows.append((number, row))
    return rows, errors


def _records(data: bytes, *, fmt: str, list_key: str) -> list[dict[str, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RowsError([RowError(row=0, field="file", message="not UTF-8")]) from None
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise RowsError([RowError(row=0, field="file", message="no header row")])
        return [dict(row) for row in reader]
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowsError(
            [RowError(row=0, field="file", message=f"not JSON (line {exc.lineno})")]
        ) from None
    if isinstance(raw, dict):
        raw = raw.get(list_key)
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        expected = f"expected a list of objects or {{{list_key}: [...]}}"
        raise RowsError([RowError(row=0, field="file", message=expected)])
    return raw


def parse_catalogue(
    data: bytes, *, fmt: Literal["csv", "json"], targets: Iterable[str] | None = None
) -> list[CatalogueRow]:
    """Validate every row; raise ``CatalogueError`` listing every problem.

    With ``targets``, a row naming a target that is not configured is an error too.
    """
    try:
        records = read_records(data, fmt=fmt)
    except RowsError as exc:
        raise CatalogueError(exc.errors) from None
    known = set(targets) if targets is not None else None
    numbered, errors = validate_rows(records, CatalogueRow, fmt=fmt, key="code")
    for number, row in numbered:
        if known is not None and row.target not in known:
            errors.append(
                RowError(row=number, field="target", message=f"unknown target {row.target!r}")
            )
    if errors:
        raise CatalogueError(sorted(errors, key=lambda error: error.row))
    return [row for _, row in numbered]


def import_rows(
    session: Session, rows: Sequence[CatalogueRow], *, now: datetime, replace: bool = False
) -> dict[str, int]:
    """Insert or update ``rows`` by code (``replace`` also deletes items not listed).

    The caller commits, so the whole file lands in one transaction or not at all.
    """
    codes = [row.code for row in rows]
    existing = {item.code: item for item in session.scalars(select(CatalogueItem))}
    created = updated = 0
    for row in rows:
        values = row.model_dump()
        item = existing.get(row.code)
        if item is None:
            session.add(CatalogueItem(**values, imported_at=now))
            created += 1
        else:
            for key, value in values.items():
                setattr(item, key, value)
            item.imported_at = now
            updated += 1
    deleted = 0
    if replace:
        gone = [code for code in existing if code not in set(codes)]
        if gone:
            session.execute(delete(CatalogueItem).where(CatalogueItem.code.in_(gone)))
            deleted = len(gone)
    return {"created": created, "updated": updated, "deleted": deleted}
