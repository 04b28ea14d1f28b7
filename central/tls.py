"""The site's own PKI: a CA that only this factory's nodes trust, and the central unit's certificate.

Why a site CA rather than a public one: the central unit sits on a private plant network with no public
name; the nodes pin this CA (``ca_file`` in their config), so a device that merely holds *some* valid
certificate cannot impersonate the central unit. Made with the ``openssl`` command line (Debian's
``openssl`` package; no Python crypto dependency): EC P-256 keys, SHA-256, the server certificate with
subjectAltName entries for every DNS name and IP address the nodes may use (TLS clients check the SAN,
not the CN), ``extendedKeyUsage=serverAuth``, the CA constrained to ``pathlen:0``. Private keys are
written 0600 and never printed.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import tempfile
from pathlib import Path

CA_DAYS = 3650


class TlsError(ValueError):
    """The PKI cannot be created or used as asked, with the reason."""


def _openssl(*args: str, cwd: Path) -> None:
    try:
        subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise TlsError("the openssl command is missing: apt-get install openssl") from None
    except subprocess.CalledProcessError as e:
        raise TlsError(f"openssl {args[0]} failed: {e.stderr.strip()[-400:]}") from None


def san_entries(names: list[str]) -> list[str]:
    """``DNS:…``/``IP:…`` subjectAltName entries (default: this host's name, localhost, 127.0.0.1)."""
    names = names or [socket.gethostname(), "localhost", "127.0.0.1"]
    out = []
    for n in dict.fromkeys(names):
        try:
            out.append(f"IP:{ipaddress.ip_address(n)}")
        except ValueError:
            if not n or any(c in n for c in " ,/\\\n\"'"):
                raise TlsError(f"not a DNS name or IP address: {n!r}") from None
            out.append(f"DNS:{n}")
    return out


class SiteCa:
    def __init__(self, directory: Path):
        # resolved once: openssl runs in a temporary folder, where a relative path would point elsewhere
        self.dir = Path(directory).resolve()
        self.ca_cert, self.ca_key = self.dir / "ca.pem", self.dir / "ca.key"
        self.server_cert, self.server_key = self.dir / "server.pem", self.dir / "server.key"
        self.last_names: list[str] = []

    def init(self, names: list[str], days: int = 825, force: bool = False) -> tuple[Path, Path]:
        """A new CA and a server certificate signed by it (``tls init``), all or nothing: both are built
        in a temporary folder and moved into place only once complete, so a failure (a bad name, a
        missing openssl) leaves no half-built CA that a second run would then refuse to replace.
        Refuses to replace an existing CA unless ``force``: every node pins it, replacing it cuts them
        all off until they get the new one."""
        if self.ca_cert.exists() and not force:
            raise TlsError(f"{self.ca_cert} exists: every node pins it; use `tls renew` for a new server "
                           "certificate, or --force to start a new CA (then re-pin every node)")  # fmt: skip
        _check_days(days)
        san = san_entries(names)
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".init-") as tmp:
            t = Path(tmp)
            _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=t)
            (t / "ca.cnf").write_text("[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:true,"
                                      "pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n")  # fmt: skip
            _openssl("req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", str(CA_DAYS), "-subj",
                     f"/CN=rftwin site CA {socket.gethostname()}", "-config", "ca.cnf", "-extensions", "v3_ca",
                     "-out", "ca.pem", cwd=t)  # fmt: skip
            os.chmod(t / "ca.key", 0o600)
            _sign_server(t, t / "ca.pem", t / "ca.key", t / "ca.srl", san, days)
            for name in ("ca.key", "ca.pem", "ca.srl", "server.key", "server.pem"):  # all built: move in
                os.replace(t / name, self.dir / name)
        self.last_names = [s.split(":", 1)[1] for s in san]
        return self.server_cert, self.server_key

    def issue_server(self, names: list[str], days: int = 825) -> tuple[Path, Path]:
        """A new server key and certificate signed by the existing CA, for ``names`` (DNS names / IPs)."""
        if not (self.ca_cert.exists() and self.ca_key.exists()):
            raise TlsError(f"no site CA in {self.dir}: run `rftwin-central tls init` first")
        _check_days(days)
        san = san_entries(names)
        with tempfile.TemporaryDirectory(dir=self.dir, prefix=".renew-") as tmp:
            t = Path(tmp)
            _sign_server(t, self.ca_cert, self.ca_key, self.dir / "ca.srl", san, days)
            os.replace(t / "server.key", self.server_key)
            os.replace(t / "server.pem", self.server_cert)
        self.last_names = [s.split(":", 1)[1] for s in san]
        return self.server_cert, self.server_key


def _check_days(days: int) -> None:
    if not 1 <= days <= 3650:
        raise TlsError(f"days must be within 1..3650, got {days}")


def _sign_server(t: Path, ca_cert: Path, ca_key: Path, serial: Path, san: list[str], days: int) -> None:
    """``server.key`` (0600) and ``server.pem`` in folder ``t``, signed by the CA (absolute paths)."""
    (t / "ext.cnf").write_text(f"subjectAltName={','.join(san)}\nbasicConstraints=critical,CA:false\n"
                               "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "server.key", cwd=t)
    _openssl("req", "-new", "-key", "server.key", "-subj", "/CN=rftwin central", "-out", "server.csr", cwd=t)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key),
             "-CAcreateserial", "-CAserial", str(serial), "-sha256", "-days", str(days),
             "-extfile", "ext.cnf", "-out", "server.pem", cwd=t)  # fmt: skip
    os.chmod(t / "server.key", 0o600)
