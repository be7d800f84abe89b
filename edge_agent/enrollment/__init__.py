"""Enrollment at the outlet: the PC's own key, the fleet certificate, TLS and renewal.

The fleet CA is pinned at enrollment (``trust``); renewals must chain to it.

Exception tree::

    AgentError (edge_agent.errors)
    └── EnrollmentError        enrollment or renewal failed, or the files are unusable
        ├── NotEnrolled        mqtts:// was asked for but there is no certificate yet
        └── UntrustedAnswer    the answer does not match the pinned CA; nothing stored
"""

from edge_agent.enrollment.client import enroll, renew
from edge_agent.enrollment.errors import EnrollmentError, NotEnrolled, UntrustedAnswer
from edge_agent.enrollment.renewal import RenewalLoop, renew_at
from edge_agent.enrollment.store import Identity, TlsStore

__all__ = [
    "EnrollmentError",
    "Identity",
    "NotEnrolled",
    "RenewalLoop",
    "TlsStore",
    "UntrustedAnswer",
    "enroll",
    "renew",
    "renew_at",
]
