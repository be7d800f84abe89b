"""The fleet's certificate authority: outlet client certificates, broker certificate, CRL.

Exception tree::

    PkiError                 (a problem with the CA files or a request to sign)
    └── BadCertificateRequest  the CSR or proof of possession is unusable
"""

from fleet_server.pki.ca import (
    CA_CERT_FILE,
    CRL_FILE,
    SERVER_CLIENT_CN,
    FleetCA,
    IssuedCertificate,
    MqttClientFiles,
)
from fleet_server.pki.errors import BadCertificateRequest, PkiError
from fleet_server.pki.requests import load_csr, verify_possession

__all__ = [
    "CA_CERT_FILE",
    "CRL_FILE",
    "SERVER_CLIENT_CN",
    "BadCertificateRequest",
    "FleetCA",
    "IssuedCertificate",
    "MqttClientFiles",
    "PkiError",
    "load_csr",
    "verify_possession",
]
