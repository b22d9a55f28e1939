"""Operations settings, JSON logs and redaction, authorization decisions, server options."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from fetcher.config import AuthzClient, ServerSettings, SettingsError, load_settings
from fetcher.server._app import server_options
from fetcher.server._logging_json import JsonFormatter, Redactor, configure_logging, request_id
from fetcher.server._metrics_http import metrics_address
from fetcher.server._reload import config_signature
from fetcher.server._security import Authorizer


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fetcher.toml"
    path.write_text(text)
    return path


def test_operations_defaults() -> None:
    s = load_settings(None, env={})
    assert s.server.drain_delay_s == 5.0 and s.server.workers == 0
    assert s.server.metrics_listen == "127.0.0.1:9100"
    assert not s.server.tls.enabled and s.authz == {}
    assert s.log.format == "json" and not s.log.requests and not s.tracing.enabled


def test_nested_tls_and_authz_from_file_and_env(tmp_path: Path) -> None:
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    path = _write(
        tmp_path,
        f'[server.tls]\ncert_file = "{cert}"\nkey_file = "{cert}"\n'
        f'client_ca_file = "{cert}"\nrequire_client_cert = true\n'
        '[authz.clients.ranker]\nidentities = ["ranker.svc"]\nservices = ["user_merchant"]\n',
    )
    env = {
        "FETCHER__SERVER__DRAIN_DELAY_S": "1.5",
        "FETCHER__AUTHZ__CLIENTS__RANKER__GROUPS": "user_profile, merchant_stats",
        "FETCHER__AUTHZ__CLIENTS__JOB__TOKEN_ENV": "JOB_TOKEN",
        "FETCHER__AUTHZ__CLIENTS__JOB__SERVICES": "*",
        "JOB_TOKEN": "abcdef",
    }
    s = load_settings(path, env=env)
    assert s.server.drain_delay_s == 1.5
    assert s.server.tls.require_client_cert and s.server.tls.cert_file == str(cert)
    assert s.authz["ranker"] == AuthzClient(
        "ranker", identities=("ranker.svc",), services=("user_merchant",),
        groups=("user_profile", "merchant_stats"),
    )
    assert s.authz["job"].token_env == "JOB_TOKEN" and s.authz["job"].services == ("*",)
    assert "abcdef" not in s.describe()
    tls_env = {"FETCHER__SERVER__TLS__REQUIRE_CLIENT_CERT": "false"}
    with pytest.raises(SettingsError, match="identities"):
        load_settings(path, env=tls_env)


@pytest.mark.parametrize(
    ("text", "env", "needles"),
    [
        ('[server.tls]\ncert_file = "/nope.pem"\n', {}, ["server.tls.cert_file", "key_file"]),
        ("[server.tls]\nrequire_client_cert = true\n", {}, ["client_ca_file"]),
        ("[authz.clients.a]\nservices = ['*']\n", {}, ["authz.clients.a", "recognised"]),
        ("[authz.clients.a]\ntoken_sha256 = 'xyz'\nservices = ['*']\n", {}, ["64", "sha256"]),
        ("[authz.clients.a]\ntoken_env = 'NOPE_T'\nservices = ['*']\n", {}, ["NOPE_T"]),
        ("[authz.clients.a]\ntoken_env = 'T'\n", {"T": "tok1"}, ["allows nothing"]),
        ("[authz]\nrules = 1\n", {}, ["authz.rules", "unknown key"]),
        ("[log]\nformat = 'xml'\n", {}, ["log.format", "json or text"]),
        ("[server]\nmetrics_listen = 'nowhere'\n", {}, ["server.metrics_listen", "empty"]),
        ("[server]\ndrain_delay_s = -1\n", {}, ["server.drain_delay_s", ">= 0"]),
        ("", {"FETCHER__SERVER__TLS__CERT": "x"}, ["server.tls.cert", "unknown key"]),
    ],
)
def test_bad_operations_settings(
    tmp_path: Path, text: str, env: dict[str, str], needles: list[str]
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(_write(tmp_path, text), env=env)
    for needle in needles:
        assert needle in str(err.value)
    assert "Fix:" in str(err.value)


def test_redactor_scrubs_url_passwords_bearer_tokens_and_literals() -> None:
    r = Redactor()
    r.add("s3cr3t-token")
    text = r.scrub("url redis://u:pw1@h:1/0 auth Bearer abc.def-ghi and s3cr3t-token here")
    assert text == "url redis://u:***@h:1/0 auth Bearer *** and *** here"


def test_json_lines_carry_request_id_extras_and_no_secret() -> None:
    stream = io.StringIO()
    redactor = Redactor()
    redactor.add("hunter22")
    configure_logging("json", logging.INFO, redactor, static={"worker": 3}, stream=stream)
    try:
        log = logging.getLogger("fetcher.test")
        token = request_id.set("rid-1")
        log.info("connecting to redis://:hunter22@h/0", extra={"store": "main"})
        request_id.reset(token)
        log.info("outside")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "rid-1" and first["store"] == "main" and first["worker"] == 3
    assert first["level"] == "INFO" and first["logger"] == "fetcher.test" and "ts" in first
    assert "hunter22" not in stream.getvalue()
    assert "request_id" not in second


def test_json_formatter_keeps_exception_text() -> None:
    formatter = JsonFormatter(Redactor())
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, "f", 1, "failed", None, sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(record))["exc"]


class _Context:
    """The two ServicerContext methods the authorizer reads."""

    def __init__(self, metadata: tuple[tuple[str, str], ...] = (),
                 auth: dict[str, list[bytes]] | None = None) -> None:
        self._metadata = metadata
        self._auth = auth or {}

    def invocation_metadata(self) -> Any:
        return self._metadata

    def auth_context(self) -> Any:
        return self._auth


def test_authorizer_by_certificate_and_token() -> None:
    redactor = Redactor()
    clients = {
        "ranker": AuthzClient("ranker", identities=("ranker.svc",), services=("user_merchant",)),
        "job": AuthzClient("job", token_env="JOB_T", groups=("*",)),
        "etl": AuthzClient("etl", token_sha256=hashlib.sha256(b"etl-tok").hexdigest(),
                           groups=("user_profile",)),
    }
    authz = Authorizer(clients, {"JOB_T": "job-token"}, redactor)
    ranker = authz.authenticate(_Context(auth={"x509_common_name": [b"ranker.svc"]}))
    assert ranker is not None and ranker.allows("service", "user_merchant")
    assert not ranker.allows("group", "user_profile")
    job = authz.authenticate(_Context((("authorization", "Bearer job-token"),)))
    assert job is not None and job.client == "job" and job.allows("group", "anything")
    etl = authz.authenticate(_Context((("authorization", "bearer etl-tok"),)))
    assert etl is not None and etl.allows("group", "user_profile")
    assert authz.authenticate(_Context((("authorization", "Bearer nope"),))) is None
    assert authz.authenticate(_Context(auth={"x509_common_name": [b"other"]})) is None
    assert authz.authenticate(_Context()) is None
    assert redactor.scrub("job-token") == "***"


def test_server_options_carry_limits_and_keepalive() -> None:
    options = dict(server_options(
        ServerSettings(max_concurrent_streams=50, max_connection_age_ms=0), reuse_port=True
    ))
    assert options["grpc.so_reuseport"] == 1
    assert options["grpc.max_concurrent_streams"] == 50
    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.http2.min_recv_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert "grpc.max_connection_age_ms" not in options


def test_metrics_port_per_worker() -> None:
    assert metrics_address("127.0.0.1:9100", 2) == ("127.0.0.1", 9102)
    assert metrics_address("[::]:0", 3) == ("::", 0)


def test_config_signature_changes_with_a_file(tmp_path: Path) -> None:
    (tmp_path / "groups").mkdir()
    path = tmp_path / "groups" / "a.json"
    path.write_text("{}")
    before = config_signature(tmp_path)
    path.write_text("{ }")
    assert config_signature(tmp_path) != before


def test_supervisor_path_creates_no_grpc_before_forking() -> None:
    # Run in a fresh interpreter: this test process has imported grpc already.
    import subprocess
    import sys

    code = (
        "import sys, fetcher.cli, fetcher.server._workers\n"
        "from fetcher.server._reload import load_snapshot\n"
        "from fetcher.config import load_settings\n"
        "s = load_settings('config/demo.toml', env={})\n"
        "load_snapshot(s.server.config_dir, s.stores)\n"
        "import threading\n"
        "print(sorted(m for m in ('grpc', 'lmdb', 'uvloop') if m in sys.modules),"
        " threading.active_count())\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, timeout=60, check=True).stdout.strip()
    assert out == "[] 1"
