"""A site PKI for TLS tests, made with the openssl command line: a CA, a server certificate for
127.0.0.1 signed by it, and an unrelated CA (what a node must refuse)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_site_pki(d: Path) -> Path:
    """Writes ca.pem/ca.key, server.pem/server.key (SAN IP:127.0.0.1), other.pem into ``d``."""

    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=rftwin test site CA")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=central")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.pem", "-days", "2",
         "-subj", "/CN=some other CA")  # fmt: skip
    return d
