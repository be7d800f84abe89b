"""A clerk's web app on an origin of its own: a tiny page server (HTTP or HTTPS) on a
loopback address of its own, and, for HTTPS, a test CA with one server certificate.

The page imports the JS client from the agent and exposes ``runFlow(token)``: read the
ID card, open the event stream, capture a document, file a submission with it as a
material and wait for the case number on the stream — only client calls, as a clerk app
would make them. Errors come back as the client's ``GovedgeError`` fields.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.local_api.browser_outlet import CLERK, ITEM, REGION, WINDOW

_PAGE = """<!doctype html>
<html lang="zh-CN"><meta charset="utf-8"><title>办件系统</title>
<p>案件编号: <span id="case">—</span></p><p id="error"></p>
<script type="module">
import { GovedgeLocal, GovedgeError } from "CLIENT_URL";
window.runFlow = async (token) => {
  const api = new GovedgeLocal({ baseUrl: "AGENT", token });
  const seen = [], states = [];
  let stream = null, wake = () => {}, reopened = () => {};
  // What the page saw, for a failure's message: the stream's states and event names.
  const story = () => `states ${states.join(",")}; events ${seen.map((e) => e.name).join(",")}`;
  try {
    const card = await api.readIdCard();
    const opened = new Promise((ok, fail) => {
      const late = () => fail(new Error(`the event stream did not open in 30 s (${story()})`));
      setTimeout(late, 30000);
      stream = api.events((e) => { seen.push(e); wake(); }, {
        onState: (s) => {
          states.push(s);
          if (s !== "open") return;
          ok();
          if (states.includes("reconnecting")) reopened();
        },
      });
    });
    await opened;
    const doc = await api.captureDocument();
    const accepted = await api.submit({
      item_code: "ITEM", region_code: "REGION", window: "WINDOW", clerk: "CLERK",
      applicant: { name: card.name, id_number: card.id_number },
      materials: [{ name: "身份证复印件", document_id: doc.document_id }],
    });
    const result = await new Promise((ok, fail) => {
      setTimeout(() => fail(new Error(`no transaction.result within 60 s (${story()})`)), 60000);
      wake = () => {
        const r = seen.find((e) => e.name === "transaction.result"
                                   && e.data.tx_id === accepted.tx_id);
        if (r) ok(r.data);
      };
      // As docs/local-api.md advises: a result sent while the stream was down is asked once.
      reopened = async () => {
        const s = await api.transactionStatus(accepted.tx_id);
        if (s.status === "delivered" || s.status === "rejected")
          ok({ outcome: s.status, case_number: s.case_number, reason: s.reason });
      };
      wake();
    });
    document.getElementById("case").textContent = result.case_number;
    return { tx_id: accepted.tx_id, outcome: result.outcome, case_number: result.case_number,
             id_number: card.id_number, document_size: doc.size };
  } catch (err) {
    if (!(err instanceof GovedgeError)) throw err;
    document.getElementById("error").textContent = `${err.message} — ${err.hint}`;
    return { error: err.code, status: err.status, message: err.message, hint: err.hint };
  } finally { stream?.close(); }
};
window.pageReady = true;
</script>
</html>
"""


CLIENT = Path(__file__).parents[2] / "edge_agent" / "local_api" / "client" / "govedge-local.js"


def page_html(agent_url: str, client_url: str | None = None) -> bytes:
    """The clerk page for an agent at ``agent_url``, importing the client from the agent
    or, with ``client_url``, from a copy the app ships itself."""
    html = _PAGE.replace("CLIENT_URL", client_url or f"{agent_url}/client/govedge-local.js")
    html = html.replace("AGENT", agent_url)
    for name, value in {"ITEM": ITEM, "REGION": REGION, "WINDOW": WINDOW, "CLERK": CLERK}.items():
        html = html.replace(f'"{name}"', f'"{value}"')
    return html.encode()


@dataclass(frozen=True)
class TestCa:
    """A CA and one server certificate (``chain``: server then CA, PEM) with its key."""

    chain: Path
    key: Path
    ca_spki_sha256: str  # base64, as --ignore-certificate-errors-spki-list wants it


def make_test_ca(directory: Path, host: str, address: str) -> TestCa:
    """A fresh CA and a server certificate for ``host`` and ``address``, valid one day."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "govedge test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address(address))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = directory / "chain.pem"
    chain.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_path = directory / "server.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return TestCa(chain, key_path, base64.b64encode(hashlib.sha256(spki).digest()).decode())


@contextlib.contextmanager
def serving_page(address: str, body: bytes, *, tls: TestCa | None = None) -> Iterator[int]:
    """Serve ``body`` on ``address`` (HTTPS with ``tls``), and at ``/govedge-local.js`` a copy
    of the client; yields the port."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            is_client = self.path == "/govedge-local.js"
            answer = CLIENT.read_bytes() if is_client else body
            kind = "text/javascript" if is_client else "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on what the page does."""

    server = http.server.ThreadingHTTPServer((address, 0), Page)
    if tls is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.chain, tls.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
