"""Scope documents and their immutable versions: validate, put with optimistic
concurrency, list, read, diff and roll back (docs/config.md, "The config API").

A put names the version it was made against (``If-Match``): the scope's current
version must still be that one, checked with one compare-and-set ``UPDATE`` on
``config_scopes`` so two operators editing at once cannot both win. A new scope is
created against version 0. Every change is a new ``config_versions`` row; none is ever
changed. The caller commits (the audit row goes in the same transaction).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fleet_server.config.tables import ConfigScope, ConfigVersion
from govedge_wire.config import DesiredConfig, Scope, ScopeError, canonical_json, parse_scope

# A scope document's largest canonical JSON: the signed envelope of the merged config
# may be at most 192 KiB (MAX_ENVELOPE_BYTES), so no single layer may come near it.
MAX_DOCUMENT_BYTES = 128 * 1024
# Raises ValueError naming an unknown alert rule or parameter (alerts.rules.check_override,
# handed in from above: the alerts layer sits over config).
AlertCheck = Callable[[str, dict[str, Any]], None]
# Refused writes by reason, exported as govedge_config_refused (fleet_server.metrics).
REFUSALS: Counter[str] = Counter()


class ConfigStoreError(Exception):
    """Base of the store's refusals; ``reason`` is the counted label."""

    reason = "error"


class InvalidScope(ConfigStoreError):
    """The scope text is not ``global``, ``region:CODE``, ``kind:KIND`` or ``outlet:ID``."""

    reason = "invalid_scope"


class InvalidDocument(ConfigStoreError):
    """The document does not validate; ``errors`` lists each problem."""

    reason = "invalid_document"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} problem(s) in the document")
        self.errors = errors


class DocumentTooLarge(ConfigStoreError):
    """The document's canonical JSON is over ``MAX_DOCUMENT_BYTES``."""

    reason = "too_large"


class NotFound(ConfigStoreError):
    """No such scope or version."""

    reason = "not_found"


class PreconditionRequired(ConfigStoreError):
    """An existing scope was written without naming the version it was made against."""

    reason = "precondition_required"


class VersionConflict(ConfigStoreError):
    """The version the write was made against is no longer the current one."""

    reason = "stale_version"

    def __init__(self, scope: str, expected: int, current: int) -> None:
        super().__init__(
            f"scope {scope} is at version {current}, not {expected}: someone changed it; "
            f"read it again, reapply your change and send If-Match: {current}"
        )
        self.current = current


@dataclass(frozen=True, slots=True)
class VersionRow:
    """One stored version, detached from the session."""

    scope: str
    version: int
    document: dict[str, Any]
    author: str
    created_at: datetime
    comment: str | None
    rolled_back_to: int | None
    closed_hours_only: bool

    def summary(self) -> dict[str, Any]:
        """Everything but the document."""
        return {
            "scope": self.scope,
            "version": self.version,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "comment": self.comment,
            "rolled_back_to": self.rolled_back_to,
            "closed_hours_only": self.closed_hours_only,
        }

    def as_json(self) -> dict[str, Any]:
        """The summary with the document."""
        return self.summary() | {"document": self.document}


def refused(error: ConfigStoreError) -> ConfigStoreError:
    """Count ``error`` and hand it back (``raise refused(...)``)."""
    REFUSALS[error.reason] += 1
    return error


def check_scope(text: str) -> Scope:
    """The parsed scope; ``InvalidScope`` with ``parse_scope``'s sentence otherwise."""
    try:
        return parse_scope(text)
    except ScopeError as exc:
        raise refused(InvalidScope(str(exc))) from None


def _pydantic_errors(exc: ValidationError) -> list[dict[str, Any]]:
    # The offending input is left out: it may be large, and the caller has it.
    return [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def check_document(document: object, check_alert: AlertCheck) -> dict[str, Any]:
    """``document`` validated as one scope's config, alert names checked; else raises."""
    if not isinstance(document, dict):
        raise refused(InvalidDocument([_error([], "the document must be a JSON object")]))
    try:
        size = len(canonical_json(document))
    except (TypeError, ValueError) as exc:
        raise refused(InvalidDocument([_error([], f"not canonical JSON: {exc}")])) from None
    if size > MAX_DOCUMENT_BYTES:
        raise refused(
            DocumentTooLarge(f"the document is {size} bytes; at most {MAX_DOCUMENT_BYTES}")
        )
    try:
        DesiredConfig.model_validate(document)
    except ValidationError as exc:
        raise refused(InvalidDocument(_pydantic_errors(exc))) from None
    problems = []
    for rule, params in (document.get("alerts") or {}).items():
        try:
            check_alert(rule, {k: v for k, v in (params or {}).items() if v is not None})
        except ValueError as exc:
            problems.append(_error(["alerts", rule], str(exc), "unknown_alert"))
    if problems:
        raise refused(InvalidDocument(problems))
    return document


def _error(loc: list[str], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _row(row: ConfigVersion) -> VersionRow:
    return VersionRow(
        scope=row.scope,
        version=row.version,
        document=dict(row.document),
        author=row.author,
        created_at=row.created_at,
        comment=row.comment,
        rolled_back_to=row.rolled_back_to,
        closed_hours_only=bool(row.closed_hours_only),
    )


def current_version(session: Session, scope: str) -> int:
    """The scope's current version, 0 when it has none."""
    version = session.scalar(select(ConfigScope.version).where(ConfigScope.scope == scope))
    return int(version or 0)


def put_document(
    session: Session,
    scope: Scope,
    document: Mapping[str, Any],
    *,
    expected: int | None,
    author: str,
    comment: str | None = None,
    closed_hours_only: bool = False,
    rolled_back_to: int | None = None,
    now: datetime | None = None,
) -> VersionRow:
    """Store ``document`` as the scope's next version if it is still at ``expected``.

    ``expected`` None (no If-Match) is only allowed for a scope that does not exist
    yet. The document must already be checked (``check_document``).
    """
    text = str(scope)
    at = now or datetime.now(UTC)
    if expected is None:
        current = current_version(session, text)
        if current:
            raise refused(
                PreconditionRequired(
                    f"scope {text} exists (version {current}): send If-Match with the "
                    "version your change was made against"
                )
            )
        expected = 0
    version = expected + 1
    if expected == 0:
        session.add(ConfigScope(scope=text, version=version, updated_at=at))
        try:
            session.flush()
        except IntegrityError:  # the scope exists (or was created by someone just now)
            session.rollback()
            raise refused(VersionConflict(text, 0, current_version(session, text))) from None
    else:
        # The compare-and-set: only one of two writers against the same version moves it.
        moved = session.execute(
            update(ConfigScope)
            .where(ConfigScope.scope == text, ConfigScope.version == expected)
            .values(version=version, updated_at=at)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            raise refused(VersionConflict(text, expected, current_version(session, text)))
    row = ConfigVersion(
        scope=text,
        version=version,
        document=dict(document),
        author=author[:128],
        created_at=at,
        comment=comment[:1024] if comment else None,
        rolled_back_to=rolled_back_to,
        closed_hours_only=closed_hours_only,
    )
    session.add(row)
    session.flush()
    return _row(row)


def get_version(session: Session, scope: Scope, version: int | None = None) -> VersionRow:
    """Version ``version`` of the scope, or its current one; ``NotFound`` otherwise."""
    text = str(scope)
    number = current_version(session, text) if version is None else version
    row = session.get(ConfigVersion, (text, number)) if number else None
    if row is None:
        what = f"scope {text} has no version {number}" if version else f"scope {text} is not set"
        raise NotFound(what)
    return _row(row)


def list_versions(session: Session, scope: Scope) -> list[VersionRow]:
    """Every version of the scope, newest first; ``NotFound`` for an unknown scope."""
    rows = session.scalars(
        select(ConfigVersion)
        .where(ConfigVersion.scope == str(scope))
        .order_by(ConfigVersion.version.desc())
    ).all()
    if not rows:
        raise NotFound(f"scope {scope} is not set")
    return [_row(row) for row in rows]


def list_scopes(session: Session) -> list[dict[str, Any]]:
    """Every scope with its current version, who made it and when."""
    rows = session.execute(
        select(ConfigScope.scope, ConfigScope.version, ConfigVersion.author,
               ConfigVersion.created_at, ConfigVersion.comment)
        .join(ConfigVersion, (ConfigVersion.scope == ConfigScope.scope)
              & (ConfigVersion.version == ConfigScope.version))
        .order_by(ConfigScope.scope)
    )  # fmt: skip
    return [
        {"scope": scope, "version": version, "author": author,
         "created_at": created_at.isoformat(), "comment": comment}
        for scope, version, author, created_at, comment in rows
    ]  # fmt: skip


def rollback(
    session: Session,
    scope: Scope,
    to_version: int,
    *,
    expected: int | None,
    author: str,
    comment: str | None = None,
    closed_hours_only: bool = False,
) -> VersionRow:
    """A new version carrying version ``to_version``'s document (``rolled_back_to`` set)."""
    old = get_version(session, scope, to_version)
    if expected is None:
        current = current_version(session, str(scope))
        raise refused(
            PreconditionRequired(
                f"scope {scope} is at version {current}: send If-Match with the version "
                "you are rolling back from"
            )
        )
    return put_document(
        session,
        scope,
        old.document,
        expected=expected,
        author=author,
        comment=comment or f"rollback to version {to_version}",
        closed_hours_only=closed_hours_only,
        rolled_back_to=to_version,
    )
