"""Operators, roles, API tokens, enrollment and the audit log (see ``docs/security.md``).

Exception tree::

    SecurityError        400: the request is malformed (bad name, bad CSR)
    ├── NotFound         404: no such user or outlet
    ├── Conflict         409: the name is taken
    └── Refused          403: token or proof invalid, expired, used or revoked
"""

from fleet_server.security.errors import Conflict, NotFound, Refused, SecurityError
from fleet_server.security.roles import Role
from fleet_server.security.users import NewToken, Principal

__all__ = [
    "Conflict",
    "NewToken",
    "NotFound",
    "Principal",
    "Refused",
    "Role",
    "SecurityError",
]
