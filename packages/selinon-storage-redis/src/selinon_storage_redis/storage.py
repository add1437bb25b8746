"""Redis storage adapter: one key per task id, holding one JSON document."""

from __future__ import annotations

import codecs
import json
import threading
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from selinon import DataStorage, SelinonMissingDataException, describe_error, jsonpolicy, records
from selinon.errors import ConfigurationError, StorageError
from selinon.secrets import leaks, scrub, secrets_in
from selinon.storage import ExcInfo
from selinon_storage_redis.connections import Connections

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
URL_SCHEMES = ("redis", "rediss", "unix")
CERT_REQS = ("required", "optional", "none")
#: Subclasses of redis-py's ConnectionError that another try cannot fix: the credentials were refused.
CREDENTIAL_ERRORS = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.ExternalAuthProviderError,
)


#: The fields of this adapter's records written before they carried the format marker (version 0.1.0).
_UNMARKED = (
    frozenset({"flow_name", "task_name", "node_args", "result"}),
    frozenset({"flow_name", "task_name", "node_args", "error"}),
)


class Redis(DataStorage):
    """Keeps each task's record under ``key_prefix + task_id`` as a JSON document in UTF-8.

    The first positional options are Selinon 1.x's, in its order, so a 1.x configuration given as a list still
    binds; every newer option is keyword-only. With ``layout: selinon1`` records are written as Selinon 1.x wrote
    them, at the bare task id; records of both kinds are read in either layout.

    The 1.x surface, for subclasses written for Selinon 1.x: ``conn`` is the ``redis.Redis`` client (None when
    not connected), ``charset`` is ``'utf-8'``, ``errors`` the decoding error handler.
    """

    thread_safe = True  # redis-py's connection pool hands each thread its own connection
    #: A lost or refused connection, a timeout, a server still loading its data: the pool's `retry:` policy
    #: retries them. Refused credentials are redis-py ConnectionErrors too: the adapter raises those as a
    #: plain StorageError, so they fail at once.
    transient_errors = (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ConnectionError,
        TimeoutError,
    )
    secret_options = frozenset({"password", "url"})
    #: What `selinon plugins show` gives as the defaults of options left out (unless `url` says otherwise).
    option_defaults: ClassVar[dict[str, Any]] = {"host": DEFAULT_HOST, "port": DEFAULT_PORT, "db": 0}

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        db: int | None = None,
        password: str | None = None,
        socket_timeout: float | None = 30,
        connection_pool: None = None,
        charset: str | None = None,
        errors: str | None = None,
        unix_socket_path: str | None = None,
        *,
        url: str | None = None,
        username: str | None = None,
        ssl: bool = False,
        ssl_ca_certs: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_cert_reqs: str | None = None,
        key_prefix: str | None = None,
        ttl: int | None = None,
        connect_timeout: float = 5,
        max_connections: int | None = None,
        client_name: str | None = None,
        layout: str = records.NATIVE,
    ) -> None:
        super().__init__()
        if connection_pool is not None:
            raise ConfigurationError(
                "`connection_pool` is no longer accepted: each adapter owns its pool; size it with `max_connections`"
            )
        self.host = _optional(host, str, "host")
        self.port = _optional(port, int, "port")
        self.db = _optional(db, int, "db")
        self.username = _optional(username, str, "username")
        self.password = _optional(password, str, "password")
        self.unix_socket_path = _optional(unix_socket_path, str, "unix_socket_path")
        self.url = _optional(url, str, "url")
        self.ssl = _optional(ssl, bool, "ssl") or False
        self.ssl_ca_certs = _optional(ssl_ca_certs, str, "ssl_ca_certs")
        self.ssl_certfile = _optional(ssl_certfile, str, "ssl_certfile")
        self.ssl_keyfile = _optional(ssl_keyfile, str, "ssl_keyfile")
        self.ssl_cert_reqs = _optional(ssl_cert_reqs, str, "ssl_cert_reqs")
        try:
            self.layout = records.check_layout(layout)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        prefix: str | None = _optional(key_prefix, str, "key_prefix")
        if self.layout == records.SELINON1 and prefix:
            raise ConfigurationError(
                "`layout: selinon1` keeps records where Selinon 1.x's readers look for them, at the bare task id: "
                "remove `key_prefix`"
            )
        if prefix is None:
            prefix = "" if self.layout == records.SELINON1 else "selinon:"
        self.key_prefix: str = prefix
        self.charset = "utf-8"
        self.ttl = _optional(ttl, int, "ttl")
        self.connect_timeout = float(_optional(connect_timeout, (int, float), "connect_timeout") or 0)
        self.socket_timeout = _optional(socket_timeout, (int, float), "socket_timeout")
        self.max_connections = _optional(max_connections, int, "max_connections")
        self.client_name = _optional(client_name, str, "client_name")
        self.errors = _optional(errors, str, "errors") or "strict"
        _check_charset(_optional(charset, str, "charset"))

        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigurationError(f"`port` must be between 1 and 65535, not {self.port}")
        if self.db is not None and self.db < 0:
            raise ConfigurationError(f"`db` must be 0 or more, not {self.db}")
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError(f"`ttl` must be a positive number of seconds, not {self.ttl}")
        if self.connect_timeout <= 0:
            raise ConfigurationError(f"`connect_timeout` must be a positive number of seconds, not {connect_timeout}")
        if self.socket_timeout is not None and self.socket_timeout <= 0:
            raise ConfigurationError(
                f"`socket_timeout` must be a positive number of seconds (or null for none), not {socket_timeout}"
            )
        if self.client_name is not None and (not self.client_name or any(c <= " " for c in self.client_name)):
            raise ConfigurationError(f"`client_name` must be a non-empty name without spaces, not {client_name!r}")
        if self.max_connections is not None and self.max_connections < 1:
            raise ConfigurationError(f"`max_connections` must be 1 or more, not {self.max_connections}")
        try:
            codecs.lookup_error(self.errors)
        except LookupError:
            raise ConfigurationError(
                f"`errors` must name a codec error handler ('strict', 'replace', 'ignore'...), not {errors!r}"
            ) from None
        if self.ssl_cert_reqs is not None and self.ssl_cert_reqs.lower() not in CERT_REQS:
            raise ConfigurationError(f"`ssl_cert_reqs` must be one of {', '.join(CERT_REQS)}, not {ssl_cert_reqs!r}")

        self._secrets = secrets_in({"password": self.password, "url": self.url})
        self._tls = self.ssl
        if self.url is not None:
            self._check_url()
        elif self.unix_socket_path is not None:
            if self.host is not None or self.port is not None:
                raise ConfigurationError("give either `unix_socket_path` or `host`/`port`, not both")
            if self.ssl:
                raise ConfigurationError("`ssl` needs a TCP connection (`host`/`port`), not `unix_socket_path`")
        tls_options = [n for n in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs") if getattr(self, n)]
        if tls_options and not self._tls:
            raise ConfigurationError(
                f"`{'`, `'.join(tls_options)}` need TLS: add `ssl: true`, or use a rediss:// `url`"
            )
        self.endpoint = self._describe_endpoint()
        self._connections: Connections | None = None
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._connections is not None:
                return
            # A dedicated check connection whose every read is bounded by connect_timeout: a server that
            # accepts but never answers fails connect() as fast as one that refuses.
            check = self._make_pool(socket_timeout=self.connect_timeout, max_connections=None)
            try:
                redis.Redis(connection_pool=check).ping()
            except (redis.RedisError, OSError) as exc:
                message = f"cannot connect to Redis at {self.endpoint}: {type(exc).__name__}: {exc}"
                raise StorageError(scrub(message, self._secrets)) from (None if leaks(exc, self._secrets) else exc)
            finally:
                check.disconnect()
            pool = self._make_pool(socket_timeout=self.socket_timeout, max_connections=self.max_connections)
            self._connections = Connections(pool, self.max_connections)

    def disconnect(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, None
        if connections is not None:
            connections.disconnect()

    def is_connected(self) -> bool:
        return self._connections is not None

    @property
    def conn(self) -> redis.Redis | None:
        """Selinon 1.x's name of the client, for subclasses written for 1.x: None when not connected."""
        connections = self._connections
        return None if connections is None else connections.client

    # -- records ---------------------------------------------------------------------------------------------

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        jsonpolicy.check(result)
        if self.layout == records.SELINON1:
            record = {"node_args": node_args, "flow_name": flow_name, "task_name": task_name, "task_id": task_id}
            return self._write(task_id, _encode({**record, "result": result}))
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "result": result}
        return self._write(task_id, _encode(records.mark(record)))

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        if self.layout == records.SELINON1:
            # Selinon 1.x kept no errors, and its readers would take any record at the task id for a result.
            raise NotImplementedError("with `layout: selinon1` errors are not stored, as in Selinon 1.x")
        error = describe_error(exc_info)
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args, "error": error}
        return self._write(task_id, _encode(records.mark(record)))

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        record = self._read(task_name, task_id)
        if "result" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} failed: Redis holds its error, not a result")
        return record["result"]

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        record = self._read(task_name, task_id)
        if not isinstance(record.get("error"), dict):
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded in Redis")
        return dict(record["error"])

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        record = self._read(task_name, task_id)
        return record.get("flow_name"), record.get("task_name")

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        key = self._key(task_id)
        try:
            deleted = self._connected().execute("DEL", key)
        except CREDENTIAL_ERRORS as exc:
            raise self._refused(exc) from None
        if not deleted:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in Redis")

    def __repr__(self) -> str:
        return (
            f"<Redis {self.endpoint} key_prefix={self.key_prefix!r} layout={self.layout} "
            f"connected={self.is_connected()}>"
        )

    # -- internals -------------------------------------------------------------------------------------------

    def _key(self, task_id: str) -> str:
        # The task id is key bytes, never a pattern: only exact-key commands (SET, GET, DEL) ever see it.
        if not isinstance(task_id, str):
            raise TypeError(f"task_id must be a str, not {type(task_id).__name__}")
        return self.key_prefix + task_id

    def _write(self, task_id: str, document: bytes) -> str:
        key = self._key(task_id)
        try:
            if self.ttl is None:
                self._connected().execute("SET", key, document)
            else:
                self._connected().execute("SET", key, document, "EX", self.ttl)
        except CREDENTIAL_ERRORS as exc:
            raise self._refused(exc) from None
        return key

    def _read(self, task_name: str, task_id: str) -> dict[str, Any]:
        """The record of ``task_id``, of this adapter's format or Selinon 1.x's; ForeignRecord for anything else."""
        key = self._key(task_id)
        client = self._connected()
        try:
            raw = client.execute("GET", key)
        except CREDENTIAL_ERRORS as exc:
            raise self._refused(exc) from None
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            kind = client.execute("TYPE", key)
            raise records.ForeignRecord(
                f"Redis key {key!r} holds a Redis {kind.decode() if isinstance(kind, bytes) else kind}, "
                "not a Selinon record"
            ) from None
        if raw is None:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in Redis")
        try:
            record = json.loads(raw.decode("utf-8", self.errors) if isinstance(raw, bytes) else raw)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError alike
            raise records.ForeignRecord(f"Redis key {key!r} does not hold a JSON document in UTF-8: {exc}") from None
        records.classify(record, f"Redis key {key!r}", task_id, task_name, _UNMARKED)
        return dict(record)

    def _refused(self, exc: BaseException) -> StorageError:
        """Refused credentials (a new connection after the password changed) fail at once: retrying cannot help.

        Each call catches CREDENTIAL_ERRORS itself: a context manager around every command cost 8% of a pair's
        time against a local server (see the benchmarks)."""
        return StorageError(
            scrub(f"Redis at {self.endpoint} refused the credentials: {type(exc).__name__}: {exc}", self._secrets)
        )

    def _connected(self) -> Connections:
        connections = self._connections
        if connections is None:
            raise StorageError(f"Redis storage at {self.endpoint} is not connected; call connect() first")
        return connections

    def _check_url(self) -> None:
        assert self.url is not None
        clashes = [n for n in ("host", "port", "unix_socket_path") if getattr(self, n) is not None]
        if clashes:
            raise ConfigurationError(f"give either `url` or `{'`/`'.join(clashes)}`, not both")
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise ConfigurationError("`url` is not a valid URL (redis://[[user]:password@]host[:port][/db])") from None
        if parts.scheme not in URL_SCHEMES:
            raise ConfigurationError(
                f"`url` must start with redis://, rediss:// or unix://, not {parts.scheme or 'no scheme'!r}"
            )
        if self.password is not None and parts.password:
            raise ConfigurationError("the password is given twice: in `url` and in `password`; keep one")
        if self.username is not None and parts.username:
            raise ConfigurationError("the user name is given twice: in `url` and in `username`; keep one")
        url_db = "db" in parse_qs(parts.query) or (parts.scheme != "unix" and parts.path.strip("/") != "")
        if self.db is not None and url_db:
            raise ConfigurationError("the database is given twice: in `url` and in `db`; keep one")
        if parts.scheme == "rediss":
            self._tls = True
        elif self.ssl:
            raise ConfigurationError(f"`ssl: true` needs a rediss:// `url`, not {parts.scheme}://")

    def _describe_endpoint(self) -> str:
        """Where the server is, for messages: never the URL itself, which may hold a password."""
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme == "unix":
                return f"unix:{unquote(parts.path)}"
            return f"{parts.hostname or DEFAULT_HOST}:{parts.port or DEFAULT_PORT}"
        if self.unix_socket_path is not None:
            return f"unix:{self.unix_socket_path}"
        return f"{self.host or DEFAULT_HOST}:{self.port or DEFAULT_PORT}"

    def _make_pool(self, socket_timeout: float | None, max_connections: int | None) -> redis.ConnectionPool:
        options: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": socket_timeout,
            # The core's `retry:` policy is the one place that retries; the driver fails at once.
            "retry": Retry(NoBackoff(), 0),
        }
        for name in ("db", "username", "password", "client_name"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        if max_connections is not None:
            options["max_connections"] = max_connections
        pool_class = redis.BlockingConnectionPool if max_connections is not None else redis.ConnectionPool
        if self._tls:
            cert_reqs = (self.ssl_cert_reqs or "required").lower()
            options |= {
                "ssl_ca_certs": self.ssl_ca_certs,
                "ssl_certfile": self.ssl_certfile,
                "ssl_keyfile": self.ssl_keyfile,
                "ssl_cert_reqs": cert_reqs,
                "ssl_check_hostname": cert_reqs == "required",
            }
        if self.url is not None:
            return pool_class.from_url(self.url, **options)
        if self.unix_socket_path is not None:
            return pool_class(connection_class=redis.UnixDomainSocketConnection, path=self.unix_socket_path, **options)
        connection_class = redis.SSLConnection if self._tls else redis.Connection
        host, port = self.host or DEFAULT_HOST, self.port or DEFAULT_PORT
        return pool_class(connection_class=connection_class, host=host, port=port, **options)


def _encode(record: dict[str, Any]) -> bytes:
    """The record as UTF-8 JSON, made before any I/O so that a result JSON cannot hold writes nothing."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: \\u escapes still round-trip it exactly
        return json.dumps(record, allow_nan=False).encode("ascii")


def _optional(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    """The value if it is None or of ``kind`` (never a bool standing in for a number)."""
    if value is None:
        return None
    wants_bool = kind is bool
    if (isinstance(value, bool) and not wants_bool) or not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigurationError(f"`{name}` must be {expected}, not {type(value).__name__}")
    return value


def _check_charset(charset: str | None) -> None:
    """Selinon 1.x's ``charset``: records are always UTF-8, so it may only say so."""
    if charset is None:
        return
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        name = None
    if name != "utf-8":
        raise ConfigurationError(
            f"`charset: {charset}` is not supported: records are JSON in UTF-8; remove `charset` or set it to 'utf-8'"
        )
