"""TLS, mutual TLS and per-client authorization on the real server."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
import pytest

from tests.e2e.lifecycle_support import (
    SERVING,
    channel,
    get_request,
    start_server,
    stub,
    write_settings,
)
from tests.e2e.tls_certs import CertAuthority

pytestmark = pytest.mark.e2e


def _creds(ca: CertAuthority, client: tuple[bytes, bytes] | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(root_certificates=ca.pem.cert)
    return grpc.ssl_channel_credentials(
        root_certificates=ca.pem.cert, private_key=client[1], certificate_chain=client[0]
    )


def _code(target: str, creds: grpc.ChannelCredentials, request: object) -> grpc.StatusCode:
    with channel(target, credentials=creds) as ch:
        try:
            stub(ch).GetFeatures(request, timeout=5)
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_tls_server_accepts_a_tls_client(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path)
    cert = ca.issue("server", "fetcher.test", server=True)
    settings = write_settings(
        tmp_path, f'[server.tls]\ncert_file = "{cert.cert_file}"\nkey_file = "{cert.key_file}"\n'
    )
    server = start_server(tmp_path, settings)
    try:
        server.wait_health(SERVING, credentials=_creds(ca))
        assert _code(server.target, _creds(ca), get_request()) == grpc.StatusCode.OK
        # A plaintext client cannot talk to a TLS port.
        with pytest.raises(grpc.RpcError), channel(server.target) as ch:
            stub(ch).GetFeatures(get_request(), timeout=2)
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()


def test_mtls_identities_and_authorization(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path)
    cert = ca.issue("server", "fetcher.test", server=True)
    ranker = ca.issue("ranker", "ranker.models.test", server=False)
    stranger = ca.issue("stranger", "stranger.test", server=False)
    other_ca = CertAuthority(tmp_path, "other-ca")
    forged = other_ca.issue("forged", "ranker.models.test", server=False)
    settings = write_settings(
        tmp_path,
        f'[server.tls]\ncert_file = "{cert.cert_file}"\nkey_file = "{cert.key_file}"\n'
        f'client_ca_file = "{ca.pem.cert_file}"\nrequire_client_cert = true\n'
        '[authz.clients.ranker]\nidentities = ["ranker.models.test"]\n'
        'services = ["user_merchant"]\n'
        '[authz.clients.stranger_rule]\nidentities = ["nobody.test"]\ngroups = ["*"]\n',
    )
    server = start_server(tmp_path, settings)
    as_ranker = _creds(ca, (ranker.cert, ranker.key))
    try:
        server.wait_health(SERVING, credentials=as_ranker)
        target = server.target
        assert _code(target, as_ranker, get_request()) == grpc.StatusCode.OK
        # Allowed the service, not the group: refused, naming the target.
        with channel(target, credentials=as_ranker) as ch:
            with pytest.raises(grpc.RpcError) as err:
                stub(ch).GetFeatures(get_request("user_profile"), timeout=5)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "user_profile" in str(err.value.details())
            assert "ranker" in str(err.value.details())
        # A certificate from the CA whose identity no rule names: not authenticated.
        stranger_creds = _creds(ca, (stranger.cert, stranger.key))
        assert _code(target, stranger_creds, get_request()) == grpc.StatusCode.UNAUTHENTICATED
        # No client certificate, or one from another CA: the handshake is refused.
        assert _code(target, _creds(ca), get_request()) == grpc.StatusCode.UNAVAILABLE
        forged_creds = _creds(ca, (forged.cert, forged.key))
        assert _code(target, forged_creds, get_request()) == grpc.StatusCode.UNAVAILABLE
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
