from __future__ import annotations

from pathlib import Path

import pytest

from selinon import ConfigurationError, StorageError, StoragePool, hookimpl, plugins
from selinon.config import Configuration, StorageConfig
from selinon.pool import instantiate
from selinon.secrets import mask_configuration, scrub, secrets_in
from selinon.testing import exception_text, planted_secret


def test_secrets_are_found_by_name_and_in_urls() -> None:
    configuration = {
        "host": "db",
        "password": "p1",
        "aws_secret_access_key": "k1",
        "auth_token": "t1",
        "url": "redis://user:p2@host:6379/0",
        "nested": [{"connection_string": "postgresql://u:p3@h/d"}],
        "port": 5432,
        "keyword": "not-a-secret",
    }
    assert secrets_in(configuration) == {"p1", "k1", "t1", "p2", "p3"}
    assert secrets_in({"vault_path": "v"}, extra={"vault_path"}) == {"v"}


def test_mask_configuration() -> None:
    masked = mask_configuration({"password": "p", "url": "mongodb://u:p@h/x", "list": ["s3://a:b@c"], "port": 1})
    assert masked == {"password": "***", "url": "mongodb://u:***@h/x", "list": ["s3://a:***@c"], "port": 1}


def test_scrub_replaces_known_secrets_and_url_passwords() -> None:
    text = "failed for user u with pw hunter2 at postgresql://u:other@h/d"
    assert scrub(text, {"hunter2"}) == "failed for user u with pw *** at postgresql://u:***@h/d"


def test_planted_secret_never_shown(tmp_path, capsys, caplog, make_distribution) -> None:  # type: ignore[no-untyped-def]
    """Everything this test prints or logs lands in the run's report, which nox searches for the secret."""
    import logging

    import pytest
    from conftest import adapter_source

    from selinon import StorageError, StoragePool
    from selinon.cli import main
    from selinon.testing import planted_secret

    secret = planted_secret()
    make_distribution("acme-fail", storages={"Acme": "acme_fail:Acme"}, modules={"acme_fail": adapter_source("Acme")})
    config = tmp_path / "nodes.yaml"
    config.write_text(
        "storages:\n"
        f"  - {{name: Bad, classname: Acme, configuration: {{greeting: fail, password: '{secret}'}}}}\n"
        f"  - {{name: Url, classname: Watched, import: probe_adapters, configuration: {{password: 'x://u:{secret}@h'}}}}\n"
        "tasks: [{name: T, storage: Bad}]\n"
    )
    caplog.set_level(logging.DEBUG)
    loaded = StoragePool.configure(config)
    logging.getLogger("test").info("configuration: %r %s", loaded.storages, loaded.storages["Url"])
    with pytest.raises(StorageError) as raised:
        StoragePool.set(None, "f", "T", "id", 1)
    print(raised.value, repr(raised.value), repr(StoragePool.get_storage("Bad")))
    with pytest.raises(SystemExit):
        main(["storages", "check", "-c", str(config), "--json"])
    out, err = capsys.readouterr()
    print(out, err)
    assert secret not in out + err + caplog.text
    assert "***" in out


def test_a_password_with_an_unescaped_at_is_hidden_whole() -> None:
    secret = planted_secret()
    url = f"postgresql://user:{secret}@tail-{secret}@db.example:5432/results"
    masked = "postgresql://user:***@db.example:5432/results"
    assert mask_configuration({"url": url}) == {"url": masked}
    assert scrub(f"cannot reach {url}: refused", ()) == f"cannot reach {masked}: refused"
    assert f"{secret}@tail-{secret}" in secrets_in({"url": url})
    # The host ends the password: an "@" further on, in the path or the query, is not part of it.
    assert scrub("http://u:pw@host/path?who=a@b", ()) == "http://u:***@host/path?who=a@b"


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://user@db/results?password={}",
        "postgresql://user@db/results?sslmode=require&sslpassword={}",
        "https://store.example/bucket?secret_key={}&region=eu",
        "host=db user=u password={} dbname=results",
    ],
)
def test_secrets_in_queries_and_keyword_strings_are_hidden(template: str) -> None:
    secret = planted_secret()
    text = template.format(secret)
    assert secret not in str(mask_configuration({"dsn": text}))
    assert scrub(text, ()) == template.format("***")
    assert secret in secrets_in({"dsn": text})
    storage = StorageConfig(name="S", classname="PostgreSQL", configuration={"connection_string": text})
    assert secret not in repr(storage)


def test_a_positional_configuration_hides_its_secrets(tmp_path: Path) -> None:
    """Selinon 1.x's list form: only the adapter's signature tells which argument is the password."""
    secret = planted_secret()
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n"
        f"  - {{name: P, classname: Watched, import: probe_adapters, configuration: ['{secret}', 'no to {secret}']}}\n"
        "tasks: [{name: T, storage: P}]\n"
    )
    configuration = StoragePool.configure(path)
    assert (
        repr(configuration.storages["P"])
        == "StorageConfig(name='P', classname='Watched', configuration=['***', '***'])"
    )
    instance = instantiate(configuration.storages["P"])
    assert instance.adapter.password == secret
    with pytest.raises(StorageError) as raised:
        StoragePool.set(None, "f", "T", "id", 1)
    assert str(raised.value) == "storage 'P' (Watched): store failed: RuntimeError: no to ***"
    assert secret not in exception_text(raised.value)


def test_an_instantiated_storage_hides_its_secrets(tmp_path: Path) -> None:
    secret = planted_secret()
    storage = StorageConfig(
        name="S", classname="Watched", import_path="probe_adapters", configuration={"password": secret}
    )
    instance = instantiate(storage)
    assert instance.secrets == {secret}
    assert secret not in repr(instance) + str(instance) + repr(instance.secrets)
    StoragePool.configure(Configuration(storages={"S": storage}))
    StoragePool.get_connected_storage("S")
    slot = StoragePool._slots["S"]
    assert secret not in repr(vars(slot))


def test_no_exception_chained_to_an_error_shows_a_secret(tmp_path: Path) -> None:
    """Not the message only: a traceback, a log handler or an error tracker shows what is chained to it too."""
    secret = planted_secret()
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n"
        f"  - {{name: W, classname: Wrapping, import: probe_adapters, configuration: {{password: '{secret}'}}}}\n"
        f"  - {{name: B, classname: Picky, import: probe_adapters, configuration: {{password: '{secret}'}}}}\n"
        "tasks: [{name: T, storage: W}]\n"
    )
    StoragePool.configure(path)
    events: list[BaseException] = []

    class Recorder:
        @hookimpl
        def storage_event(self, error: BaseException | None) -> None:
            if error is not None:
                events.append(error)

    plugins.pm.register(Recorder())
    with pytest.raises(StorageError, match="the server refused the store") as raised:
        StoragePool.set(None, "f", "T", "id", 1)
    assert secret not in exception_text(raised.value)
    assert events and all(secret not in exception_text(event) for event in events)
    with pytest.raises(ConfigurationError, match="Picky rejected its configuration: password '\\*\\*\\*'") as refused:
        StoragePool.get_storage("B")
    assert secret not in exception_text(refused.value)


def test_storages_check_hides_positional_secrets_and_whole_url_passwords(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from selinon.cli import main

    secret = planted_secret()
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "storages:\n"
        f"  - {{name: P, classname: Watched, import: probe_adapters, configuration: ['{secret}', 'no to {secret}']}}\n"
        "  - name: U\n    classname: Watched\n    import: probe_adapters\n"
        f"    configuration: {{fail_with: 'no to x://u:{secret}@tail-{secret}@host/db'}}\n"
    )
    for args in ([], ["--json"]):
        with pytest.raises(SystemExit) as exited:
            main(["storages", "check", "-c", str(path), *args])
        assert exited.value.code == 1
        out, err = capsys.readouterr()
        assert "no to ***" in out and "no to x://u:***@host/db" in out
        assert secret not in out + err
