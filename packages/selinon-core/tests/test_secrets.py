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
