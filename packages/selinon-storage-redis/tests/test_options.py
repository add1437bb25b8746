"""Option validation: every check happens in __init__, with no I/O, and no message carries a secret."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from selinon_storage_redis import Redis

from selinon import StorageError
from selinon.errors import ConfigurationError
from selinon.secrets import mask_configuration, secrets_in

SECRET = "pl4nted-0ptions-s3cret"


def test_defaults() -> None:
    adapter = Redis()
    assert adapter.endpoint == "localhost:6379"
    assert adapter.key_prefix == "selinon:"
    assert adapter.ttl is None
    assert adapter.connect_timeout == 5
    assert adapter.socket_timeout == 30
    assert adapter.max_connections is None
    assert not adapter.is_connected()


def test_selinon_1x_positional_order() -> None:
    """A 1.x configuration given as a list binds in 1.x's order:
    host, port, db, password, socket_timeout, connection_pool, charset, errors, unix_socket_path."""
    adapter = Redis("10.0.0.7", 6380, 2, SECRET, 12.5, None, "utf-8", "replace")
    assert (adapter.host, adapter.port, adapter.db, adapter.password) == ("10.0.0.7", 6380, 2, SECRET)
    assert (adapter.socket_timeout, adapter.errors) == (12.5, "replace")
    assert Redis(None, None, 0, None, None, None, None, None, "/run/redis.sock").endpoint == "unix:/run/redis.sock"


def test_init_does_no_io() -> None:
    """Nothing listens on port 1 of TEST-NET-3: building must not notice, only connect() may."""
    start = time.monotonic()
    adapter = Redis(host="203.0.113.1", port=1, password=SECRET, connect_timeout=30)
    assert time.monotonic() - start < 0.5
    assert not adapter.is_connected()
    adapter.disconnect()  # never connected: a no-op
    with pytest.raises(StorageError, match="not connected"):
        adapter.retrieve("flow", "task", "id")


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "UTF8", "utf_8"])
def test_charset_utf8_is_accepted(charset: str) -> None:
    Redis(charset=charset)


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ascii", "no-such-charset", "utf-8-sig"])
def test_charset_other_than_utf8_is_refused(charset: str) -> None:
    with pytest.raises(ConfigurationError, match=r"records are JSON in UTF-8; remove `charset` or set it to 'utf-8'"):
        Redis(charset=charset)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": "6379"}, "`port` must be int, not str"),
        ({"port": True}, "`port` must be int, not bool"),
        ({"port": 70000}, "`port` must be between 1 and 65535"),
        ({"db": -1}, "`db` must be 0 or more"),
        ({"host": 127}, "`host` must be str"),
        ({"ttl": 0}, "`ttl` must be a positive number of seconds"),
        ({"ttl": 1.5}, "`ttl` must be int, not float"),
        ({"ttl": True}, "`ttl` must be int, not bool"),
        ({"connect_timeout": 0}, "`connect_timeout` must be a positive number"),
        ({"connect_timeout": None}, "`connect_timeout` must be a positive number"),
        ({"socket_timeout": -1}, "`socket_timeout` must be a positive number of seconds \\(or null for none\\)"),
        ({"max_connections": 0}, "`max_connections` must be 1 or more"),
        ({"key_prefix": 5}, "`key_prefix` must be str"),
        ({"ssl": "yes"}, "`ssl` must be bool, not str"),
        ({"errors": "explode"}, "`errors` must name a codec error handler"),
        ({"ssl": True, "ssl_cert_reqs": "maybe"}, "`ssl_cert_reqs` must be one of required, optional, none"),
        ({"ssl_ca_certs": "/ca.pem"}, "`ssl_ca_certs` need TLS: add `ssl: true`, or use a rediss:// `url`"),
        ({"ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem"}, "`ssl_certfile`, `ssl_keyfile` need TLS"),
        ({"unix_socket_path": "/s", "host": "h"}, "give either `unix_socket_path` or `host`/`port`, not both"),
        ({"unix_socket_path": "/s", "ssl": True}, "`ssl` needs a TCP connection"),
        ({"url": "redis://h", "host": "h"}, "give either `url` or `host`, not both"),
        ({"url": "redis://h", "port": 1, "unix_socket_path": "/s"}, "give either `url` or `port`/`unix_socket_path`"),
        ({"url": "redis://h/1", "db": 1}, "the database is given twice"),
        ({"url": "unix:///s?db=2", "db": 1}, "the database is given twice"),
        ({"url": "redis://h", "ssl": True}, "`ssl: true` needs a rediss:// `url`, not redis://"),
        ({"url": "redis://u@h", "username": "u"}, "the user name is given twice"),
        ({"url": "redis://h:notaport"}, "`url` is not a valid URL"),
        ({"connection_pool": object()}, "`connection_pool` is no longer accepted"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Redis(**options)


def test_url_and_db_combine_when_the_url_names_no_database() -> None:
    assert Redis(url="redis://127.0.0.1:6390", db=4).db == 4
    assert Redis(url="rediss://127.0.0.1", ssl_ca_certs="/ca.pem").endpoint == "127.0.0.1:6379"
    assert Redis(url="unix:///run/redis.sock?db=1").endpoint == "unix:/run/redis.sock"


def test_secrets_stay_out_of_option_errors() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Redis(url=f"http://user:{SECRET}@h:1/0")
    assert "'http'" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        Redis(url=f"redis://:{SECRET}@h:1/0", password=SECRET)
    assert "the password is given twice" in str(raised.value)
    with pytest.raises(ConfigurationError) as raised:
        Redis(password=12345)  # type: ignore[arg-type]
    assert "12345" not in str(raised.value)
    for text in (str(raised.value), repr(raised.value)):
        assert SECRET not in text


def test_repr_names_the_endpoint_never_the_url_or_password() -> None:
    for adapter in (
        Redis(url=f"redis://admin:{SECRET}@cache.example:6380/3"),
        Redis(host="cache.example", port=6380, password=SECRET),
        Redis(url=f"rediss://:{SECRET}@cache.example:6380"),
    ):
        assert repr(adapter) == "<Redis cache.example:6380 key_prefix='selinon:' layout=native connected=False>"
        assert SECRET not in str(adapter)


def test_secret_options_hide_password_and_url() -> None:
    configuration = {"url": f"redis://:{SECRET}@h:6379/0", "password": SECRET, "host": "h"}
    assert SECRET in secrets_in(configuration, Redis.secret_options)
    masked = mask_configuration(configuration, Redis.secret_options)
    assert SECRET not in repr(masked)
    assert masked["host"] == "h"


def test_plugins_show_gives_the_defaults_the_adapter_uses(capsys: pytest.CaptureFixture[str]) -> None:
    from selinon.cli import main

    main(["plugins", "show", "Redis", "--json"])
    defaults = {o["name"]: o["default"] for o in json.loads(capsys.readouterr().out)["options"]}
    assert (defaults["host"], defaults["port"], defaults["db"]) == ("localhost", 6379, 0)
    assert Redis().endpoint == f"{defaults['host']}:{defaults['port']}"
