"""TLS on loopback for the benchmarks: a throwaway certificate and a TLS-terminating proxy.

Some contenders (pysnc) accept only ``https://`` instance URLs, while the FakeServiceNow
serves plain HTTP. `serve_tls` listens on 127.0.0.1 with a self-signed certificate for
``127.0.0.1`` and pipes each connection's bytes to the fake's port: the fake's faults
(black holes, latency, 429s) pass through unchanged, and when either side closes, so does
the other.

The certificate comes from the ``cryptography`` package when it is installed, else from the
``openssl`` command. It is valid for one day, made fresh in a temporary folder for each run,
and trusted by passing its file as the client's CA bundle (``verify=`` in requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

_HOST = "127.0.0.1"
_CHUNK = 65_536


def _with_cryptography(cert: Path, key: Path) -> bool:
    """Write the pair with the `cryptography` package; False if it is not installed."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return False
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(_HOST))]),
            critical=False,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(private.public_key()), critical=False
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return True


def _with_openssl(cert: Path, key: Path) -> bool:
    """Write the pair with the `openssl` command; False if it is not on PATH."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "1", "-subj", f"/CN={_HOST}",
        "-addext", f"subjectAltName=IP:{_HOST}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-keyout", str(key), "-out", str(cert),
    ]  # fmt: skip
    # A fixed command line of our own, no shell: nothing here comes from outside.
    subprocess.run(command, check=True, capture_output=True)  # noqa: S603
    return True


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 and its key into `folder`.

    Returns:
        The certificate's path (also the CA bundle a client trusts) and the key's.

    Raises:
        RuntimeError: If neither the `cryptography` package nor `openssl` is available.
    """
    cert, key = folder / "loopback.pem", folder / "loopback.key"
    if not (_with_cryptography(cert, key) or _with_openssl(cert, key)):
        raise RuntimeError(
            "a TLS certificate for 127.0.0.1 needs the cryptography package "
            "(pip install cryptography) or the openssl command"
        )
    return cert, key


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until end of stream or an error, then close `writer`."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def serve_tls(upstream_port: int, folder: Path) -> AsyncIterator[tuple[str, Path]]:
    """Terminate TLS on a free port of 127.0.0.1 and forward to `upstream_port` in the clear.

    Yields:
        The ``https://127.0.0.1:PORT`` base URL and the certificate to trust.
    """
    cert, key = make_certificate(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    pipes: set[asyncio.Task[None]] = set()

    async def connected(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(_HOST, upstream_port)
        except OSError:
            client_writer.close()
            return
        for task in (
            asyncio.ensure_future(_pipe(client_reader, up_writer)),
            asyncio.ensure_future(_pipe(up_reader, client_writer)),
        ):
            pipes.add(task)
            task.add_done_callback(pipes.discard)

    server = await asyncio.start_server(connected, _HOST, 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://{_HOST}:{port}", cert
    finally:
        server.close()
        for task in list(pipes):
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        await server.wait_closed()
