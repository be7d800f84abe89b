"""Enrollment at the outlet: the PC's own key, the fleet certificate, TLS and renewal.

Exception tree::

    AgentError (edge_agent.errors)
    └── EnrollmentError        enrollment or renewal failed, or the files are unusable
        └── NotEnrolled        mqtts:// was asked for but there is no certificate yet
"""

from edge_agent.enrollment.client import enroll, renew
from edge_agent.enrollment.errors import EnrollmentError, NotEnrolled
from edge_agent.enrollment.renewal import RenewalLoop, renew_at
from edge_agent.enrollment.store import Identity, TlsStore

__all__ = [
    "EnrollmentError",
    "Identity",
    "NotEnrolled",
    "RenewalLoop",
    "TlsStore",
    "enroll",
    "renew",
    "renew_at",
]
