"""The ``[sip] tls_*`` keys and ``[limits] tls_handshake_seconds``: TLS is on when
``tls_listen`` is set, needs a certificate and key then, and a ``sips:`` URI with TLS
off is refused at load time, each problem naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config import ConfigError, load_config


def load(tmp_path: Path, text: str) -> object:
    return load_config(_write(tmp_path, text))


def test_tls_is_off_by_default_and_on_with_its_files(tmp_path: Path) -> None:
    defaults = load_config(None, cwd=tmp_path)
    assert defaults.sip.tls_listen is None and defaults.limits.tls_handshake_seconds == 5.0
    config = load_config(
        _write(
            tmp_path,
            '[sip]\ntls_listen = "127.0.0.1:5061"\ntls_cert = "tls/c.pem"\n'
            'tls_key = "tls/k.pem"\ntls_ca = "/etc/ca.pem"\ntls_verify_clients = true\n'
            "[limits]\ntls_handshake_seconds = 2\n"
            '[routing]\ncall_taker = "sips:desk@127.0.0.1:5071"\n',
        )
    )
    assert config.sip.tls_listen == ("127.0.0.1", 5061)
    assert config.sip.tls_cert == tmp_path / "tls" / "c.pem"  # relative to the file
    assert config.sip.tls_ca == Path("/etc/ca.pem") and config.sip.tls_verify_clients
    assert config.limits.tls_handshake_seconds == 2.0


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[sip]\ntls_listen = "127.0.0.1:5061"\n', "sip.tls_cert: required with sip.tls_listen"),
        ('[sip]\ntls_listen = "127.0.0.1:5061"\n', "sip.tls_key: required with sip.tls_listen"),
        ('[sip]\ntls_cert = "c.pem"\n', "sip.tls_cert: needs sip.tls_listen"),
        (
            '[sip]\ntls_listen = "127.0.0.1:5061"\ntls_cert = "c"\ntls_key = "k"\n'
            "tls_verify_clients = true\n",
            "sip.tls_verify_clients: needs sip.tls_ca",
        ),
        ('[routing]\ncall_taker = "sips:desk@127.0.0.1"\n', "routing.call_taker: a sips: URI"),
        (
            '[routing]\ntrunk = "sips:trunk@192.0.2.1"\n',
            "routing.trunk: a sips: URI needs TLS (set sip.tls_listen)",
        ),
        ('[sip]\ntls_listen = "nowhere"\n', "sip.tls_listen:"),
        ("[limits]\ntls_handshake_seconds = 0\n", "limits.tls_handshake_seconds:"),
        ("[sip]\ntls_verify_clients = 1\n", "sip.tls_verify_clients:"),
    ],
)
def test_tls_settings_that_cannot_work_are_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert named in str(caught.value)


def _write(folder: Path, text: str) -> Path:
    path = folder / "recproxy.toml"
    path.write_text(text)
    return path
