"""Temporal behind TLS that requires a client certificate (as a self-hosted cluster with
mTLS is): a worker and the starter, configured only through the SDK's TEMPORAL_* variables,
complete a follow-up through it; without the client certificate the CLI prints one line."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fixtures.followups import worker_environment
from tests.followup_harness import make_event, policy_document
from workflows.followup import DepartureFollowUp


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False,
                 server: bool = False) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
    elif server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: Path, name: str, certificate: x509.Certificate, key) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost / 127.0.0.1 and a client certificate."""
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _certificate("Aftercare test CA", ca_key, "Aftercare test CA", ca_key, ca=True)
    ca_path, _ = _write(tmp_path, "ca", ca, ca_key)
    server_cert, server_key_path = _write(tmp_path, "server", _certificate(
        "localhost", server_key, "Aftercare test CA", ca_key, server=True), server_key)
    client_cert, client_key_path = _write(tmp_path, "client", _certificate(
        "aftercare-worker", client_key, "Aftercare test CA", ca_key), client_key)
    return {"ca": ca_path, "server_cert": server_cert, "server_key": server_key_path,
            "client_cert": client_cert, "client_key": client_key_path}


@pytest.fixture
async def mtls_proxy(temporal_env, certificates) -> AsyncIterator[str]:
    """A TLS-terminating proxy in front of the dev server that demands a client certificate."""
    upstream_host, upstream_port = (
        temporal_env.client.service_client.config.target_host.rsplit(":", 1))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates["server_cert"], certificates["server_key"])
    context.load_verify_locations(certificates["ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def forward(client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(
            upstream_host, int(upstream_port))
        await asyncio.gather(pipe(client_reader, server_writer),
                             pipe(server_reader, client_writer))

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"127.0.0.1:{port}"


def temporal_tls_environment(settings, address: str, certificates: dict[str, Path],
                             *, client_certificate: bool = True) -> dict[str, str]:
    """The worker's environment with Temporal reached only through TEMPORAL_* variables."""
    environment = {k: v for k, v in worker_environment(settings, "unused").items()
                   if not k.startswith("TEMPORAL_") and k != "AFTERCARE_TEMPORAL_ADDRESS"}
    environment.update({
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TLS": "true",
        "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(certificates["ca"]),
        "TEMPORAL_TLS_SERVER_NAME": "localhost",
    })
    if client_certificate:
        environment["TEMPORAL_TLS_CLIENT_CERT_PATH"] = str(certificates["client_cert"])
        environment["TEMPORAL_TLS_CLIENT_KEY_PATH"] = str(certificates["client_key"])
    return environment


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def starter(environment: dict[str, str], *args: str) -> Finished:
    """The starter CLI, run without blocking the loop that serves the proxy."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "starter.py", *args, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return Finished(process.returncode, out.decode(), err.decode())


async def test_worker_and_starter_complete_a_followup_through_mtls(
    followups_without_worker, mtls_proxy, certificates, tmp_path,
):
    followups = followups_without_worker
    environment = temporal_tls_environment(followups.settings, mtls_proxy, certificates)
    event = make_event()
    policy = policy_document()
    policy["reschedule"]["webhook_url"] = followups.booking.webhook_url(event.clinic_id)
    (tmp_path / "policies.yaml").write_text(yaml.safe_dump({"default": {}, "clinic-42": policy}))
    (tmp_path / "event.json").write_text(event.model_dump_json())
    environment["AFTERCARE_POLICY_FILE"] = str(tmp_path / "policies.yaml")

    worker = subprocess.Popen([sys.executable, "worker.py"], env=environment)
    try:
        started = await starter(environment, "start", str(tmp_path / "event.json"))
        assert started.returncode == 0, started.stderr
        workflow_id = started.stdout.strip()
        assert workflow_id == event.workflow_id
        handle = followups.client.get_workflow_handle_for(DepartureFollowUp.run, workflow_id)
        await followups.advance(handle, timedelta(minutes=10))
        await followups.until_step(handle, "checkin_sent")
        replied = await starter(environment, "reply", workflow_id, "OK")
        assert replied.returncode == 0, replied.stderr
        await followups.until_step(handle, "reply_received")
        outcome = await followups.finish(handle)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    assert outcome.client_safe
    assert followups.texts_to(event.client.phone)


async def test_without_the_client_certificate_the_cli_prints_one_line(
    followups_without_worker, mtls_proxy, certificates,
):
    environment = temporal_tls_environment(
        followups_without_worker.settings, mtls_proxy, certificates, client_certificate=False)
    refused = await starter(environment, "status", "followup-clinic-42-s-none")
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(
        f"error: cannot reach Temporal at {mtls_proxy} "
        "(check TEMPORAL_ADDRESS and TEMPORAL_TLS_* / TEMPORAL_API_KEY): "), lines[0]
    assert "Traceback" not in refused.stderr
