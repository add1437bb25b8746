"""Task results in one MongoDB collection: one document per task id, kept unique by an index."""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from bson.int64 import Int64
from pymongo import ASCENDING, MongoClient, uri_parser
from pymongo.collection import Collection
from pymongo.errors import AutoReconnect, DocumentTooLarge, DuplicateKeyError, OperationFailure, PyMongoError

from selinon import jsonpolicy, records
from selinon.errors import SelinonMissingDataException, StorageError
from selinon.secrets import scrub
from selinon.storage import DataStorage, ExcInfo, describe_error

DEFAULT_PORT = 27017
INDEX_NAME = "selinon_task_id_unique"
SCHEMES = ("mongodb://", "mongodb+srv://")

#: Deeper values are kept as JSON text: MongoDB refuses documents nested more than 100 levels.
_MAX_NATIVE_DEPTH = 64
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DUPLICATE_KEY = 11000
_INDEX_CONFLICTS = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
#: BSONObjectTooLarge, and "resulting document after update is larger than ..." (older servers)
_TOO_LARGE = (10334, 17419, 17420)
_HOSTNAME = re.compile(r"[A-Za-z0-9.\-]+\Z")
#: The fields of this adapter's documents written before they carried the format marker (version 0.1.0).
_UNMARKED = frozenset(
    frozenset({"task_id", "flow_name", "task_name", args, value, "stored_at"})
    for args in ("node_args", "node_args_json")
    for value in ("result", "result_json", "error", "error_json")
)


_CONTAINERS_OR_INT64 = (dict, list, Int64)


def _plain_ints(value: Any) -> Any:
    """``value`` with BSON's 64-bit integers turned back into ``int``: a result stored as 2**40 is retrieved as
    2**40, not ``Int64``. Done here rather than by a codec ``TypeDecoder``, which makes pymongo decode every reply
    twice and encode more slowly (twice the client time for a 5 MB result; see the benchmarks)."""
    kind = type(value)
    if kind is Int64:
        return int(value)
    if kind is dict:
        for key, item in value.items():
            if type(item) in _CONTAINERS_OR_INT64:
                value[key] = _plain_ints(item)
    elif kind is list:
        for index, item in enumerate(value):
            if type(item) in _CONTAINERS_OR_INT64:
                value[index] = _plain_ints(item)
    return value


def _utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: BSON cannot hold it, JSON text (\\ud800) can
        return False
    return True


def _plain_key(key: Any) -> bool:
    return type(key) is str and key != "" and key[0] != "$" and "." not in key and "\x00" not in key and _utf8(key)


def _native(value: Any, depth: int = 0) -> bool:
    """Whether BSON keeps this JSON value exactly (and MongoDB stores it without fuss); else it goes as JSON text.

    Exact types only: a subclass of dict or str may encode differently in BSON and in JSON.
    """
    kind = type(value)
    if value is None or kind is bool or kind is float:
        return True
    if kind is int:
        return bool(_INT64_MIN <= value <= _INT64_MAX)
    if kind is str:
        return _utf8(value)
    if depth >= _MAX_NATIVE_DEPTH:
        return False
    if kind is list or kind is tuple:
        return all(_native(item, depth + 1) for item in value)
    if kind is dict:
        return all(_plain_key(key) and _native(item, depth + 1) for key, item in value.items())
    return False


def _encode(field: str, value: Any) -> dict[str, Any]:
    """``{field: value}`` when BSON holds the value exactly, else ``{field_json: JSON text}``.

    Raises TypeError/ValueError for what JSON cannot hold (sets, objects) before any I/O.
    """
    if _native(value):
        return {field: value}
    return {f"{field}_json": json.dumps(value, allow_nan=False, separators=(",", ":"))}


def _decode(document: dict[str, Any], field: str) -> tuple[bool, Any]:
    if field in document:
        return True, _plain_ints(document[field])
    if f"{field}_json" in document:
        return True, json.loads(document[f"{field}_json"])
    return False, None


def _document(node_args: Any, flow_name: str, task_name: str, value: dict[str, Any]) -> dict[str, Any]:
    """A native document but for its ``task_id``: the format marker first, ``value`` the encoded result or error."""
    return {
        records.MARKER: records.VERSION,
        "flow_name": flow_name,
        "task_name": task_name,
        **_encode("node_args", node_args),
        **value,
        "stored_at": datetime.datetime.now(datetime.timezone.utc),
    }


def _check_task_id(task_id: Any) -> str:
    # A dict here would be read by MongoDB as a query operator ({"$ne": null} matches every record).
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a string, not {type(task_id).__name__}")
    return task_id


def _number(name: str, value: Any, whole: bool = False) -> float:
    """A number option, also given as a string (what a ``{ENV}`` reference expands to)."""
    if isinstance(value, str):
        try:
            value = int(value) if whole else float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or value <= 0:
        kind = "a whole number" if whole else "a number of seconds"
        raise ValueError(f"`{name}` must be {kind} greater than 0, not {value!r}")
    return value


def _optional_string(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"`{name}` must be a non-empty string, not {type(value).__name__}")
    return value


class MongoDB(DataStorage):
    """Task results in one MongoDB collection, one document per task id.

    A unique index on ``task_id`` (created on connect) and an upsert keep one document per task id, however
    often a task is retried. Results that BSON keeps exactly are stored as documents; others (integers beyond
    64 bits, keys with ``$`` or ``.``) as JSON text.

    :param db_name: the database
    :param collection_name: the collection; created on first write
    :param host: the server's host name (default ``localhost``); a ``mongodb://`` URI here is read as ``uri``
    :param port: the server's port (default 27017)
    :param uri: a ``mongodb://`` or ``mongodb+srv://`` connection string, instead of ``host`` and ``port``
    :param username: user to authenticate as
    :param password: that user's password
    :param auth_source: the database holding the user (MongoDB's default: ``admin``, or the URI's database)
    :param tls: connect with TLS (default: off, or what ``uri`` says)
    :param tls_ca_file: CA certificates (PEM file) to verify the server with
    :param connect_timeout: seconds allowed to reach the server, on connect and on every new connection
    :param socket_timeout: seconds one operation may wait for the server's reply before it fails (and the pool
        retries it); guards against a server that stops answering on an open connection
    :param layout: ``selinon1`` writes documents as Selinon 1.x did, for 1.x workers that read them; documents of
        both kinds are read in either layout

    The 1.x surface, for subclasses written for Selinon 1.x: ``client`` (the ``MongoClient``), ``db`` (the
    database) and ``collection``, each None when not connected; ``db_name``, ``collection_name``, ``host`` and
    ``port`` as configured.
    """

    thread_safe = True
    transient_errors = (ConnectionError, TimeoutError, AutoReconnect)
    secret_options = frozenset({"uri", "password"})
    #: What `selinon plugins show` gives as the defaults of options left out (unless `uri` says otherwise).
    option_defaults: ClassVar[dict[str, Any]] = {"host": "localhost", "port": DEFAULT_PORT, "auth_source": "admin"}

    def __init__(
        self,
        db_name: str,
        collection_name: str,
        host: str | None = None,
        port: int | str | None = None,
        uri: str | None = None,
        username: str | None = None,
        password: str | None = None,
        auth_source: str | None = None,
        tls: bool | None = None,
        tls_ca_file: str | None = None,
        connect_timeout: float | str = 5,
        socket_timeout: float | str = 60,
        layout: str = records.NATIVE,
    ) -> None:
        self.layout = records.check_layout(layout)
        self._secrets = {s for s in (password, uri) if isinstance(s, str) and s}
        if isinstance(host, str) and host.startswith(SCHEMES):
            self._secrets.add(host)
        for name, value in (("db_name", db_name), ("collection_name", collection_name)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"`{name}` must be a non-empty string, not {value!r}")
        if any(c in db_name for c in '/\\. "$\x00'):
            raise ValueError(f'`db_name` {db_name!r} is not a MongoDB database name (no / \\ . space " $)')
        if collection_name.startswith(("$", "system.")) or "\x00" in collection_name:
            raise ValueError(f"`collection_name` {collection_name!r} is not a collection MongoDB lets one write")
        host = _optional_string("host", host)
        uri = _optional_string("uri", uri)
        if uri is not None and (host is not None or port is not None):
            raise ValueError("give the server either as `uri` or as `host` and `port`, not both")
        if host is not None and host.startswith(SCHEMES):
            # Selinon 1.x handed `host` and `port` to MongoClient, which reads a URI there (with `port` as the
            # port of hosts the URI gives without one).
            uri, host = host, None
        self._uri = uri
        self.port = None if port is None else int(_number("port", port, whole=True))
        if self.port is not None and self.port > 65535:
            raise ValueError(f"`port` must be at most 65535, not {self.port}")
        self.host = host
        self.username = _optional_string("username", username)
        self._password = _optional_string("password", password)
        self.auth_source = _optional_string("auth_source", auth_source)
        self.tls_ca_file = _optional_string("tls_ca_file", tls_ca_file)
        if tls is not None and not isinstance(tls, bool):
            raise ValueError(f"`tls` must be true or false, not {tls!r}")
        if self._password is not None and self.username is None:
            raise ValueError("`password` is given without `username`")
        self.tls = tls
        self.connect_timeout = _number("connect_timeout", connect_timeout)
        self.socket_timeout = _number("socket_timeout", socket_timeout)
        self.db_name = db_name
        self.collection_name = collection_name
        self.endpoint = self._endpoint()
        self._lock = threading.Lock()
        self._client: MongoClient[dict[str, Any]] | None = None
        self._collection: Collection[dict[str, Any]] | None = None
        #: Whether the collection has the unique index on task_id (and so may hold documents of earlier versions).
        self._indexed = False

    # -- options -----------------------------------------------------------------------------------------------

    def _endpoint(self) -> str:
        """host:port (or the URI's hosts) for messages; never a user name or a password."""
        if self._uri is None:
            host = self.host or "localhost"
            return host if ":" in host and not host.startswith("[") else f"{host}:{self.port or DEFAULT_PORT}"
        srv = self._uri.startswith("mongodb+srv://")
        if not self._uri.startswith(SCHEMES):
            raise ValueError("`uri` must start with mongodb:// or mongodb+srv://")
        scheme_free = self._uri.partition("://")[2]
        try:
            # mongodb+srv:// would make parse_uri look the name up in DNS: parse its host part as plain mongodb://
            parsed = uri_parser.parse_uri(
                "mongodb://" + scheme_free.partition("?")[0] if srv else self._uri,
                default_port=None if srv else (self.port or DEFAULT_PORT),
            )
        except (PyMongoError, ValueError) as exc:
            raise ValueError(f"`uri` is not a valid MongoDB URI: {self._scrub(str(exc))}") from None
        if parsed["password"]:
            self._secrets.add(parsed["password"])
        nodes = parsed["nodelist"]
        if srv:
            if len(nodes) != 1 or nodes[0][1] is not None or not _HOSTNAME.match(nodes[0][0]):
                raise ValueError("a mongodb+srv:// `uri` names exactly one host name, without a port")
            return f"{nodes[0][0]} (DNS SRV)"
        return ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in nodes)

    @property
    def where(self) -> str:
        return f"MongoDB at {self.endpoint} (collection {self.db_name}.{self.collection_name})"

    def __repr__(self) -> str:
        return f"<MongoDB {self.endpoint} {self.db_name}.{self.collection_name} connected={self.is_connected()}>"

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _client_options(self) -> dict[str, Any]:
        timeout_ms = int(self.connect_timeout * 1000)
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": timeout_ms,
            "connectTimeoutMS": timeout_ms,
            "socketTimeoutMS": int(self.socket_timeout * 1000),
            "appname": "selinon",
        }
        if self.port is not None:
            options["port"] = self.port
        for name, value in (
            ("username", self.username),
            ("password", self._password),
            ("authSource", self.auth_source),
            ("tls", self.tls),
            ("tlsCAFile", self.tls_ca_file),
        ):
            if value is not None:
                options[name] = value
        return options

    # -- connection --------------------------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._client is not None:
                return
            try:
                self._client, self._collection = self._open()
            except (PyMongoError, ValueError, TypeError) as exc:
                raise StorageError(f"cannot connect to {self.where}: {self._describe(exc)}") from None

    def _open(self) -> tuple[MongoClient[dict[str, Any]], Collection[dict[str, Any]]]:
        """A new client, checked with a ping within ``connect_timeout``, and the collection, indexed."""
        client: MongoClient[dict[str, Any]] = MongoClient(
            self._uri or self.host or "localhost", **self._client_options()
        )
        try:
            client.admin.command("ping")
            collection = client.get_database(self.db_name).get_collection(self.collection_name)
            self._indexed = self._prepare(collection)
        except BaseException:
            client.close()
            raise
        return client, collection

    def _prepare(self, collection: Collection[dict[str, Any]]) -> bool:
        """Whether the collection has the unique index on ``task_id``, made here where documents need it.

        This version's documents are unique by ``_id`` (the task id) and need no second index: each index costs
        every write. Documents of 0.2.0 and earlier, and Selinon 1.x's (an ObjectId ``_id``), are kept one per task
        id, against this version's too, by the unique index on ``task_id``: it is made here when the collection
        holds any, and 0.2.0 makes it itself when it connects, before it writes. ``layout: selinon1`` writes such
        documents, so it always has it.
        """
        older = {"_id": {"$type": "objectId"}}
        if (
            self.layout == records.NATIVE
            and not self._has_unique_index(collection)
            and collection.find_one(older, {"_id": True}) is None
        ):
            return False
        self._ensure_index(collection)
        return True

    def _may_hold_older(self, collection: Collection[dict[str, Any]]) -> bool:
        """Whether documents of earlier versions can be here: the unique index is (0.2.0 makes it when it
        connects, which may be after this adapter did: a rollback). Asked again on each miss until it is."""
        if not self._indexed:
            self._indexed = self._has_unique_index(collection)
        return self._indexed

    def _lookups(self, collection: Collection[dict[str, Any]], key: str) -> Iterator[dict[str, str]]:
        """Where the document of task id ``key`` can be, in the order to look: by ``_id`` (this version's), then,
        only after a miss and where they can be, by ``task_id`` (an older version's, or ``layout: selinon1``)."""
        if self.layout == records.NATIVE:
            yield {"_id": key}
        if self._may_hold_older(collection):
            yield {"task_id": key}

    def _ensure_index(self, collection: Collection[dict[str, Any]]) -> None:
        """The unique index that keeps one document per task id, even when two workers store at once."""
        try:
            collection.create_index([("task_id", ASCENDING)], unique=True, name=INDEX_NAME)
        except OperationFailure as exc:
            if exc.code == _DUPLICATE_KEY:
                raise StorageError(
                    f"cannot create the unique index on task_id in {self.where}: the collection holds several "
                    "documents for one task id (as Selinon 1.x's MongoDB adapter could leave); remove the "
                    "duplicates, or set `collection_name` to a new collection"
                ) from None
            if exc.code not in _INDEX_CONFLICTS or not self._has_unique_index(collection):
                raise StorageError(
                    f"cannot create the unique index on task_id in {self.where}: {self._describe(exc)}; "
                    "drop the collection's other index on task_id, or set `collection_name` to a new collection"
                ) from None

    @staticmethod
    def _has_unique_index(collection: Collection[dict[str, Any]]) -> bool:
        return any(
            index.get("unique") and list(index["key"]) == [("task_id", ASCENDING)]
            for index in collection.index_information().values()
        )

    def _describe(self, exc: BaseException) -> str:
        # pymongo appends its whole topology description, or the server's whole reply
        text = str(exc).partition(", Timeout: ")[0].partition(", full error: ")[0]
        return self._scrub(f"{type(exc).__name__}: {text}")

    def disconnect(self) -> None:
        with self._lock:
            client, self._client, self._collection = self._client, None, None
        if client is not None:
            client.close()

    def is_connected(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> MongoClient[dict[str, Any]] | None:
        """Selinon 1.x's name of the client, for subclasses written for 1.x: None when not connected."""
        return self._client

    @property
    def db(self) -> Any:
        """Selinon 1.x's database attribute: None when not connected."""
        collection = self._collection
        return None if collection is None else collection.database

    @property
    def collection(self) -> Collection[dict[str, Any]] | None:
        """Selinon 1.x's collection attribute: None when not connected."""
        return self._collection

    def _records(self) -> Collection[dict[str, Any]]:
        collection = self._collection
        if collection is None:
            raise StorageError(f"not connected to {self.where}; call connect() first")
        return collection

    # -- records -----------------------------------------------------------------------------------------------

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        jsonpolicy.check(result)
        if self.layout == records.SELINON1:
            for name, value in (("result", result), ("node_args", node_args)):
                if not _native(value):
                    raise jsonpolicy.NotJSONError(
                        f"{name}: with `layout: selinon1` it must be a value BSON holds exactly, as Selinon 1.x's "
                        "readers read it from the document itself (no integers beyond 64 bits, keys with '$' or "
                        "'.', or nesting deeper than 64 levels)"
                    )
            document = {"flow_name": flow_name, "node_args": node_args, "task_name": task_name, "result": result}
            return self._replace(task_id, document)
        return self._replace(task_id, _document(node_args, flow_name, task_name, _encode("result", result)))

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        if self.layout == records.SELINON1:
            # Selinon 1.x kept no errors, and its readers would take any document of the task for a result.
            raise NotImplementedError("with `layout: selinon1` errors are not stored, as in Selinon 1.x")
        error = _encode("error", describe_error(exc_info))
        return self._replace(task_id, _document(node_args, flow_name, task_name, error))

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        document = self._find(task_name, task_id)
        if document is None:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")
        found, result = _decode(document, "result")
        if not found:
            raise SelinonMissingDataException(f"task {task_id!r} failed; it has no result")
        return result

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        document = self._find(task_name, task_id)
        found, error = _decode(document or {}, "error")
        if not found:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded in {self.where}")
        return dict(error)

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        document = self._find(task_name, task_id)
        if document is None:
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")
        return document.get("flow_name"), document.get("task_name")

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        collection, key = self._records(), _check_task_id(task_id)
        if not any(collection.delete_one(where).deleted_count for where in self._lookups(collection, key)):
            raise SelinonMissingDataException(f"no record for task {task_id!r} in {self.where}")

    def _too_large(self, task_id: str, exc: BaseException) -> StorageError:
        return StorageError(
            f"cannot store task {task_id!r} in {self.where}: the record is too large for one MongoDB document "
            f"(16 MB at most, result and node_args included); nothing was written: {self._describe(exc)}"
        )

    def _find(self, task_name: str, task_id: str) -> dict[str, Any] | None:
        """The document of ``task_id``, of this adapter's format or Selinon 1.x's; ForeignRecord for another.

        One look-up by ``_id`` finds the documents this version writes; a miss looks again by ``task_id`` for one
        that 0.2.0 or earlier, or Selinon 1.x, wrote (ObjectId ``_id``), where the collection can hold those (see
        :meth:`_prepare`). ``layout: selinon1`` writes those, so it looks by ``task_id`` at once.
        """
        collection, key = self._records(), _check_task_id(task_id)
        document = None
        for where in self._lookups(collection, key):
            # The whole document, _id dropped here: a projection cost the test server more than the _id it saves.
            document = collection.find_one(where)
            if document is not None:
                break
        if document is not None:
            del document["_id"]
            where = f"the document of task {task_id!r} in {self.where}"
            records.classify(document, where, task_id, task_name, _UNMARKED)
            if document.get("task_id") != key:  # its _id is the task id, its task_id field says otherwise
                raise records.ForeignRecord(f"{where} names another task id: a damaged document")
        return document

    def _replace(self, task_id: str, fields: dict[str, Any]) -> str:
        """Replace the whole document of ``task_id`` (or insert it) and return the record id, kept across stores.

        A document of this version is keyed by ``_id`` = the task id: one upsert by ``_id``, whose record id is
        the task id. Where a document written by 0.2.0 or earlier, or by Selinon 1.x, holds the task id (with an
        ObjectId ``_id``), that upsert's insert breaks the unique index on ``task_id``, and the older document is
        replaced in place instead, keeping its ``_id`` as the record id (as 0.2.0 returned it).
        """
        key = _check_task_id(task_id)
        if self.layout == records.SELINON1:
            return self._replace_by_task_id(key, fields)
        collection = self._records()
        document = {"_id": key, "task_id": key, **fields}
        in_place = {"task_id": key, **fields}  # no _id: a replaced document keeps its own
        for _attempt in range(3):
            try:
                with self._writing(key):
                    collection.replace_one({"_id": key}, document, upsert=True)
                return key
            except DuplicateKeyError:
                # Another document holds the task id: an older version's, or (on servers older than MongoDB 4.2,
                # which do not retry such upserts themselves) one another worker has just inserted.
                pass
            with self._writing(key):
                replaced = collection.find_one_and_replace({"task_id": key}, in_place, projection={"_id": True})
            if replaced is not None:  # else deleted since: store again
                return str(replaced["_id"])
        raise StorageError(f"could not store task {task_id!r} in {self.where}: its record kept changing under us")

    def _replace_by_task_id(self, task_id: str, fields: dict[str, Any]) -> str:
        """``layout: selinon1``: documents keyed as Selinon 1.x keyed them (an ObjectId ``_id``), one per task id."""
        document = {"task_id": task_id, **fields}
        collection = self._records()
        for _attempt in range(3):
            try:
                with self._writing(task_id):
                    outcome = collection.replace_one({"task_id": task_id}, document, upsert=True)
            except DuplicateKeyError:
                # Another worker inserted this task id between our match and our insert (MongoDB retries that
                # itself since 4.2; older servers, and look-alikes, report it): the document exists now, so the
                # next attempt replaces it.
                continue
            if outcome.upserted_id is not None:
                return str(outcome.upserted_id)
            found = collection.find_one({"task_id": task_id}, {"_id": True})
            if found is not None:  # else deleted since: store again
                return str(found["_id"])
        raise StorageError(f"could not store task {task_id!r} in {self.where}: its record kept changing under us")

    @contextlib.contextmanager
    def _writing(self, task_id: str) -> Iterator[None]:
        """A document too large for MongoDB is reported as such (nothing was written)."""
        try:
            yield
        except DocumentTooLarge as exc:  # pymongo refused to send it
            raise self._too_large(task_id, exc) from None
        except OperationFailure as exc:
            if exc.code in _TOO_LARGE:  # the server refused it
                raise self._too_large(task_id, exc) from None
            raise
