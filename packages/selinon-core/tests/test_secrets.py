from __future__ import annotations

from selinon.secrets import mask_configuration, scrub, secrets_in


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
