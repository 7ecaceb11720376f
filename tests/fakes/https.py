"""Scaffolding for local HTTPS fakes: a self-signed certificate made by the test (cryptography) and a
threaded HTTP server on 127.0.0.1 wrapped in TLS. The real requests / google-auth / msal talk to it when
REQUESTS_CA_BUNDLE (and HTTPLIB2_CA_CERTS / SSL_CERT_FILE) point at the certificate.

    server = HttpsServer(MyHandler, tmp_path)      # MyHandler: http.server.BaseHTTPRequestHandler subclass
    server.start(); server.url -> "https://127.0.0.1:PORT"; server.ca_file; server.stop()
    monkeypatch.setenv(...server.ca_env())
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path


def make_certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "fake-ca.pem", folder / "fake-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


class HttpsServer:
    def __init__(self, handler_class, folder: Path):
        self.folder = Path(folder)
        self.ca_file, self.key_file = make_certificate(self.folder)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca_file, self.key_file)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.fake = self  # handlers reach shared state via self.server.fake
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}"

    def ca_env(self) -> dict[str, str]:
        ca = str(self.ca_file)
        return {"REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca, "HTTPLIB2_CA_CERTS": ca, "CURL_CA_BUNDLE": ca}

    def start(self) -> "HttpsServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
