"""Task results as objects in one S3 bucket: one object per task id, a JSON record in its body."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import boto3  # type: ignore[import-untyped]
from botocore.client import BaseClient, Config  # type: ignore[import-untyped]
from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError  # type: ignore[import-untyped]
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.utils import determine_content_length  # type: ignore[import-untyped]

from selinon import jsonpolicy, records
from selinon.errors import SelinonError, SelinonMissingDataException, StorageError
from selinon.secrets import MASK, leaks, scrub
from selinon.storage import DataStorage, ExcInfo, describe_error

T = TypeVar("T")

#: Longest encoded task id kept readable in a key; longer ones keep a head and a hash (S3 keys end at 1024 bytes).
_MAX_ENCODED = 200
_MAX_PREFIX = 512
#: The largest object S3 takes in one PUT (5 GiB); a larger record is refused before any request.
MAX_OBJECT_SIZE = 5 * 1024**3
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_BUCKET_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
#: A PUT body up to this size goes without `Expect: 100-continue` (see no_continue_for_records).
EXPECT_CONTINUE_FROM = 1 << 20
#: Error codes S3 answers when it is overloaded; with 5xx answers they are worth another try.
_BUSY = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable"})
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
#: The fields of this adapter's records written before they carried the format marker (version 0.1.0).
_UNMARKED = frozenset(
    frozenset({"flow_name", "task_name", "node_args", value}) for value in ("result", "result_base64", "error")
)
_NOT_JSON = object()
#: The key under which ``_get`` hands over the bytes of a Selinon 1.x object: no JSON object can hold it.
_RAW = object()
_TOKEN_HEADER = re.compile(r"(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s,}&]+", re.I)


class _HideSessionToken(logging.Filter):
    """botocore's debug records show the signed request headers, and the session token is one of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "security-token" in message.lower():
            record.msg, record.args = _TOKEN_HEADER.sub(rf"\g<1>{MASK}", message), None
        return True


for _name in ("botocore.auth", "botocore.endpoint"):  # the two loggers that print signed requests
    if not any(isinstance(f, _HideSessionToken) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_HideSessionToken())


class S3Unavailable(StorageError):
    """S3 answered that it is overloaded or failing (5xx, SlowDown): the pool tries the call again."""


def object_key(prefix: str, task_id: str) -> str:
    """The key of a task's record: ``prefix`` and the task id, encoded so that it stays a single name under it.

    Percent-encoding of the UTF-8 bytes, dots and ``~`` included: the name never holds ``/`` and is never ``.``
    or ``..``, and two ids never share a key. Long ids keep a readable head and a SHA-256 (``~`` marks it).
    """
    if not isinstance(task_id, str):
        raise TypeError(f"task_id must be a string, not {type(task_id).__name__}")
    encoded = quote(task_id, safe="", errors="surrogatepass").replace(".", "%2E").replace("~", "%7E")
    if len(encoded) > _MAX_ENCODED or not encoded:
        head = encoded[:64]
        head = head[: head.rfind("%")] if "%" in head[-2:] else head  # never cut an escape in two
        encoded = f"{head}~{hashlib.sha256(task_id.encode('utf-8', 'surrogatepass')).hexdigest()}"
    return prefix + encoded


def _dump(record: dict[str, Any]) -> bytes:
    """The record as UTF-8 JSON, or TypeError/ValueError before any I/O (sets, objects, NaN, lone surrogates)."""
    return json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def _valid_bucket(bucket: Any) -> str:
    if not isinstance(bucket, str):
        raise TypeError(f"`bucket` must be a string, not {type(bucket).__name__}")
    problem = None
    if not _BUCKET.match(bucket):
        problem = "use 3 to 63 lowercase letters, digits, dots and hyphens, beginning and ending with a letter or digit"
    elif ".." in bucket:
        problem = "two dots in a row are not allowed"
    elif bucket.startswith(_RESERVED_BUCKET_PREFIXES) or bucket.endswith(_RESERVED_BUCKET_SUFFIXES):
        problem = "names beginning with xn--, sthree- or amzn-s3-demo- and some suffixes are reserved by S3"
    else:
        try:
            ipaddress.IPv4Address(bucket)
            problem = "a bucket name cannot be an IP address"
        except ValueError:
            pass
    if problem:
        raise ValueError(f"`bucket` {bucket!r} is not a valid S3 bucket name: {problem} (no underscores or capitals)")
    return bucket


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE  # an {ENV} reference expands to a string
    raise ValueError(f"`{name}` must be true or false, not {value!r}")


def _positive(name: str, value: Any) -> float:
    try:
        number = float(value)  # an {ENV} reference expands to a string
    except (TypeError, ValueError):
        number = 0.0
    if isinstance(value, bool) or not number > 0 or number == float("inf"):
        raise ValueError(f"`{name}` must be a positive number, not {value!r}")
    return number


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string, not {type(value).__name__}")
    return value


def no_continue_for_records(model: Any, params: dict[str, Any], **_: Any) -> None:
    """botocore asks for ``Expect: 100-continue`` before every PUT body, which makes each store wait a round trip
    for the server's go-ahead before sending the body. For a record up to EXPECT_CONTINUE_FROM bytes that wait
    costs more than sending a body the server might refuse, so such a PUT goes in one piece."""
    headers = params.get("headers", {})
    if model.name != "PutObject" or headers.get("Expect") != "100-continue":
        return
    length = determine_content_length(params.get("body"))  # None for a stream of unknown length: it asks first
    if length is not None and length <= EXPECT_CONTINUE_FROM:
        del headers["Expect"]


def _status(exc: ClientError) -> tuple[int, str]:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return int(status), str(exc.response.get("Error", {}).get("Code", ""))


def _run_within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, or TimeoutError once ``seconds`` have passed (botocore bounds each socket operation, not a call)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="selinon-s3-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no answer within connect_timeout ({seconds:g}s)")
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


class S3Storage(DataStorage):
    """One S3 object per task id, under ``prefix`` in ``bucket``; the bucket is created on connect if missing.

    The object's body is a JSON record: the format marker ``selinon_record``, ``flow_name``, ``task_name``,
    ``node_args`` and either ``result`` (a JSON value), ``result_base64`` (a bytes result) or ``error`` (what
    ``store_error`` keeps). One PUT replaces it whole, so a result replaces an error and an error a result. The
    record id is the object's key. With ``layout: selinon1`` objects are written as Selinon 1.x wrote them (the
    result alone, at the bare task id) and unmarked objects are read as 1.x's.

    The 1.x surface, for subclasses written for Selinon 1.x: ``_s3`` (a boto3 S3 resource, made on first use
    after ``connect()``, None when not connected), ``_session`` (the boto3 session), ``_bucket_name``,
    ``_location``, ``_endpoint_url``, ``_use_ssl`` and ``_serialize_json``.
    """

    thread_safe = True  # one boto3 client per instance; clients are thread-safe and pool their connections
    #: Lost connections, timeouts and overloaded servers: the pool tries the call again (botocore does not).
    transient_errors = (
        ConnectionError,
        TimeoutError,
        BotoConnectionError,
        HTTPClientError,
        IncompleteReadError,
        S3Unavailable,
    )
    secret_options = frozenset({"aws_secret_access_key", "aws_session_token"})

    def __init__(
        self,
        bucket: str,
        location: str | None = None,
        endpoint_url: str | None = None,
        use_ssl: bool | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        region_name: str | None = None,
        serialize_json: bool | None = None,
        prefix: str = "",
        connect_timeout: float = 5,
        read_timeout: float = 60,
        max_pool_connections: int = 10,
        create_bucket: bool = True,
        addressing_style: str | None = None,
        layout: str = records.NATIVE,
    ) -> None:
        self.layout = records.check_layout(layout)
        self.bucket = _valid_bucket(bucket)
        self.endpoint_url = _optional_text("endpoint_url", endpoint_url)
        if self.endpoint_url is not None:
            parts = urlsplit(self.endpoint_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("`endpoint_url` must be an http:// or https:// URL, such as http://127.0.0.1:9000")
            if "@" in parts.netloc:
                raise ValueError(
                    "`endpoint_url` holds a user name or password, which S3 never sends (requests are signed with "
                    "the AWS keys): remove it, and give the keys as `aws_access_key_id` and `aws_secret_access_key`"
                )
        self.region_name = _optional_text("region_name", region_name)
        self.location = _optional_text("location", location)
        self.use_ssl = None if use_ssl is None else _flag("use_ssl", use_ssl)
        self._access_key_id = _optional_text("aws_access_key_id", aws_access_key_id)
        self._secret_access_key = _optional_text("aws_secret_access_key", aws_secret_access_key)
        self._session_token = _optional_text("aws_session_token", aws_session_token)
        if (self._access_key_id is None) != (self._secret_access_key is None):
            raise ValueError(
                "give both `aws_access_key_id` and `aws_secret_access_key`, or neither (boto3 then finds "
                "credentials in the environment, ~/.aws or the instance role)"
            )
        if self._session_token is not None and self._access_key_id is None:
            raise ValueError("`aws_session_token` needs `aws_access_key_id` and `aws_secret_access_key`")
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, not {type(prefix).__name__}")
        if len(prefix.encode("utf-8", "surrogatepass")) > _MAX_PREFIX:
            raise ValueError(f"`prefix` must be at most {_MAX_PREFIX} bytes (S3 keys end at 1024)")
        if prefix and self.layout == records.SELINON1:
            raise ValueError(
                "`layout: selinon1` keeps objects where Selinon 1.x's readers look for them, at the bare task id: "
                "remove `prefix`"
            )
        self.prefix = prefix
        if serialize_json is None:  # Selinon 1.x kept the result's bytes as they were unless told otherwise
            serialize_json = self.layout == records.NATIVE
        self.serialize_json = _flag("serialize_json", serialize_json)
        self.create_bucket = _flag("create_bucket", create_bucket)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.read_timeout = _positive("read_timeout", read_timeout)
        self.max_pool_connections = int(_positive("max_pool_connections", max_pool_connections))
        if self.max_pool_connections != _positive("max_pool_connections", max_pool_connections):
            raise ValueError(f"`max_pool_connections` must be a whole number, not {max_pool_connections!r}")
        if addressing_style is None:
            # Hosts of S3-compatible servers rarely resolve bucket subdomains (http://bucket.minio:9000).
            addressing_style = "path" if self.endpoint_url else "auto"
        if addressing_style not in ("auto", "path", "virtual"):
            raise ValueError(f"`addressing_style` must be auto, path or virtual, not {addressing_style!r}")
        self.addressing_style = addressing_style
        self._secrets = {s for s in (self._secret_access_key, self._session_token) if s}
        self._client: BaseClient | None = None
        self._session: Any = None
        self._resource: Any = None
        self._endpoint = scrub(self.endpoint_url, self._secrets) if self.endpoint_url else "AWS S3"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} bucket={self.bucket!r} prefix={self.prefix!r} endpoint={self._endpoint!r} "
            f"connected={self.is_connected()}>"
        )

    # -- connection ------------------------------------------------------------------------------------------

    def connect(self) -> None:
        with self._lock:
            if self._client is not None:
                return
            what = f"cannot connect to S3 at {self._endpoint} (bucket {self.bucket!r})"
            try:
                client = self._new_client()
            except Exception as exc:  # a malformed endpoint, a missing region...
                raise self._error(what, exc) from None
            self._endpoint = scrub(client.meta.endpoint_url, self._secrets)
            what = f"cannot connect to S3 at {self._endpoint} (bucket {self.bucket!r})"
            try:
                _run_within(self.connect_timeout, lambda: self._ensure_bucket(client))
            except Exception as exc:
                client.close()
                if isinstance(exc, SelinonError):
                    raise
                raise self._error(what, exc) from (None if leaks(exc, self._secrets) else exc)
            self._client = client

    def disconnect(self) -> None:
        with self._lock:
            client, self._client, self._resource = self._client, None, None
        if client is not None:
            client.close()

    def is_connected(self) -> bool:
        return self._client is not None

    # -- the 1.x surface -------------------------------------------------------------------------------------

    @property
    def _s3(self) -> Any:
        """Selinon 1.x's boto3 S3 resource, for subclasses written for 1.x: made on first use, from the adapter's
        session and settings, and None when not connected. Like any boto3 resource it is not thread-safe."""
        with self._lock:
            if self._resource is None and self._client is not None:
                self._resource = self._session.resource("s3", **self._client_options())
            return self._resource

    @_s3.setter
    def _s3(self, resource: Any) -> None:
        self._resource = resource

    @property
    def _bucket_name(self) -> str:
        return self.bucket

    @property
    def _location(self) -> str | None:
        return self.location

    @property
    def _endpoint_url(self) -> str | None:
        return self.endpoint_url

    @property
    def _use_ssl(self) -> bool | None:
        return self.use_ssl

    @property
    def _serialize_json(self) -> bool:
        return self.serialize_json

    def _new_client(self) -> BaseClient:
        # A session per adapter: boto3's default session is shared by the whole process and not thread-safe.
        self._session = boto3.session.Session(
            aws_access_key_id=self._access_key_id,
            aws_secret_access_key=self._secret_access_key,
            aws_session_token=self._session_token,
            region_name=self.region_name,
        )
        client = self._session.client("s3", **self._client_options())
        # After botocore's own `before-call.s3` handlers, one of which adds the header.
        client.meta.events.register_last("before-call.s3", no_continue_for_records)
        return client

    def _client_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "max_pool_connections": self.max_pool_connections,
            "s3": {"addressing_style": self.addressing_style},
            # One attempt per call: the pool retries transient errors within the storage's `retry:` policy, and
            # connect() fails fast instead of backing off inside botocore.
            "retries": {"mode": "standard", "total_max_attempts": 1},
        }
        if self.endpoint_url and "request_checksum_calculation" in Config.OPTION_DEFAULTS:
            # Many S3-compatible servers reject the checksum headers botocore >= 1.36 sends by default.
            options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
        kwargs: dict[str, Any] = {"endpoint_url": self.endpoint_url, "config": Config(**options)}
        if self.use_ssl is not None:
            kwargs["use_ssl"] = self.use_ssl
        return kwargs

    def _ensure_bucket(self, client: BaseClient) -> None:
        """Check that the bucket can be reached, creating it when it does not exist yet."""
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            status, _ = _status(exc)
            where = f"bucket {self.bucket!r} at {self._endpoint}"
            if status == 403:
                raise StorageError(
                    f"access to {where} is denied: check the credentials and the bucket policy"
                ) from None
            if status == 301:
                region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
                raise StorageError(f"{where} is in region {region}; set `region_name: {region}`") from None
            if status != 404:
                raise
            if not self.create_bucket:
                raise StorageError(f"{where} does not exist; create it, or set `create_bucket: true`") from None
        location = self.location or client.meta.region_name
        kwargs: dict[str, Any] = {}
        if location and location != "us-east-1":  # us-east-1 refuses its own name as a LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": location}
        try:
            client.create_bucket(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = _status(exc)[1]
            if code == "BucketAlreadyOwnedByYou":  # another worker created it first
                return
            if code == "BucketAlreadyExists":
                raise StorageError(
                    f"bucket {self.bucket!r} belongs to another account (bucket names are global): choose another"
                ) from None
            raise

    # -- records ---------------------------------------------------------------------------------------------

    def store(self, node_args: Any, flow_name: str, task_name: str, task_id: str, result: Any) -> str:
        if self.layout == records.SELINON1:
            return self._put_selinon1(task_id, result)
        record: dict[str, Any] = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args}
        if type(result) is bytes:
            record["result_base64"] = base64.b64encode(result).decode("ascii")
        elif isinstance(result, bytearray | memoryview):
            raise jsonpolicy.NotJSONError(
                f"result: a {type(result).__name__} would read back as bytes; store bytes(result) instead"
            )
        elif not self.serialize_json:
            raise TypeError(
                f"serialize_json is false, so only bytes results can be stored, not {type(result).__name__}; "
                "encode the result, or set `serialize_json: true`"
            )
        else:
            jsonpolicy.check(result)
            record["result"] = result
        return self._put(task_id, record)

    def store_error(self, node_args: Any, flow_name: str, task_name: str, task_id: str, exc_info: ExcInfo) -> str:
        if self.layout == records.SELINON1:
            # Selinon 1.x kept no errors, and its readers would take any object at the task id for a result.
            raise NotImplementedError("with `layout: selinon1` errors are not stored, as in Selinon 1.x")
        record = {"flow_name": flow_name, "task_name": task_name, "node_args": node_args}
        return self._put(task_id, {**record, "error": describe_error(exc_info)})

    def retrieve(self, flow_name: str, task_name: str, task_id: str) -> Any:
        record = self._get(task_name, task_id)
        if "result" in record:
            return record["result"]
        if "result_base64" in record:
            return base64.b64decode(record["result_base64"])
        if _RAW in record:  # an object of Selinon 1.x's, kept as the result's bytes
            return record[_RAW]
        raise SelinonMissingDataException(f"task {task_id!r} failed; it has no result")

    def retrieve_error(self, flow_name: str, task_name: str, task_id: str) -> dict[str, str]:
        record = self._get(task_name, task_id)
        if "error" not in record:
            raise SelinonMissingDataException(f"task {task_id!r} has no error recorded")
        return dict(record["error"])

    def retrieve_owner(self, flow_name: str, task_name: str, task_id: str) -> tuple[str | None, str | None]:
        """The names kept in this adapter's records; an object of Selinon 1.x's keeps none (None, None)."""
        record = self._get(task_name, task_id)
        return record.get("flow_name"), record.get("task_name")

    def delete(self, flow_name: str, task_name: str, task_id: str) -> None:
        # DeleteObject succeeds on a missing key, so look first. Between the two calls another worker may delete
        # the record (both deletes then succeed) or store it again (that new record is deleted).
        key = self._key(task_id)
        self._call("head_object", task_id, Key=key)
        self._call("delete_object", task_id, Key=key)

    def _key(self, task_id: str) -> str:
        """The object key of a task: Selinon 1.x's was the task id itself."""
        if self.layout == records.SELINON1:
            if not isinstance(task_id, str) or not task_id or len(task_id.encode("utf-8", "surrogatepass")) > 1024:
                raise ValueError(f"with `layout: selinon1` the task id is the object key, and {task_id!r} is none")
            return task_id
        return object_key(self.prefix, task_id)

    def _put_selinon1(self, task_id: str, result: Any) -> str:
        """The result alone, as Selinon 1.x's adapter wrote it: JSON with ``serialize_json``, else its bytes."""
        if self.serialize_json:
            jsonpolicy.check(result)
            body = json.dumps(result, allow_nan=False).encode("utf-8")
        elif type(result) is bytes:
            body = result
        else:
            raise TypeError(
                f"serialize_json is false, so only bytes results can be stored, not {type(result).__name__}; "
                "encode the result, or set `serialize_json: true`"
            )
        return self._put_body(task_id, body, None)  # 1.x set no content type

    def _put(self, task_id: str, record: dict[str, Any]) -> str:
        body = _dump(records.mark(record))  # fails before anything is written
        return self._put_body(task_id, body, "application/json; charset=utf-8")

    def _put_body(self, task_id: str, body: bytes, content_type: str | None) -> str:
        key = self._key(task_id)
        if len(body) > MAX_OBJECT_SIZE:
            raise StorageError(
                f"cannot store task {task_id!r} in bucket {self.bucket!r}: the record is {len(body)} bytes, too "
                f"large for one S3 object ({MAX_OBJECT_SIZE} bytes at most in one PUT); nothing was written"
            )
        extra = {"ContentType": content_type} if content_type else {}
        self._call("put_object", task_id, Key=key, Body=body, **extra)
        return key

    def _get(self, task_name: str, task_id: str) -> dict[Any, Any]:
        """The record of ``task_id``: this adapter's, or with ``layout: selinon1`` an unmarked object of Selinon
        1.x's as ``{"result": value}`` (``{_RAW: bytes}`` without ``serialize_json``); ForeignRecord otherwise."""
        key = self._key(task_id)
        body = self._call("get_object", task_id, Key=key)["Body"].read()
        where = f"s3://{self.bucket}/{key}"
        try:
            record = json.loads(body)
        except ValueError:  # UnicodeDecodeError too
            record = _NOT_JSON
        if isinstance(record, dict) and records.MARKER in record:
            records.classify(record, where, task_id, task_name)
            return record
        if self.layout == records.SELINON1:
            if not self.serialize_json:
                return {_RAW: body}
            if record is _NOT_JSON:
                raise records.ForeignRecord(
                    f"{where} is not JSON, as an object Selinon 1.x wrote with `serialize_json: true` is"
                )
            return {"result": record}
        if isinstance(record, dict) and frozenset(record) in _UNMARKED:
            return record
        why = "its content is not JSON" if record is _NOT_JSON else f"no {records.MARKER!r} marker"
        raise records.ForeignRecord(
            f"{where} is not a Selinon record ({why}): another program's object, or one that Selinon 1.x wrote "
            "(set `layout: selinon1` to read those)"
        )

    def _call(self, operation: str, task_id: str, **kwargs: Any) -> Any:
        """One S3 call: a missing key becomes SelinonMissingDataException, an overloaded server S3Unavailable."""
        client = self._client
        if client is None:
            raise StorageError(f"S3 storage for bucket {self.bucket!r} is not connected; call connect() first")
        try:
            return getattr(client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            status, code = _status(exc)
            if code == "NoSuchBucket":
                raise StorageError(f"bucket {self.bucket!r} at {self._endpoint} no longer exists") from None
            if status == 404 or code in ("NoSuchKey", "NotFound"):
                raise SelinonMissingDataException(f"no record for task {task_id!r}") from None
            if status >= 500 or code in _BUSY:
                raise self._error(f"S3 at {self._endpoint} is unavailable", exc, S3Unavailable) from None
            raise

    # -- errors ----------------------------------------------------------------------------------------------

    def _error(self, what: str, exc: BaseException, kind: type[StorageError] = StorageError) -> StorageError:
        return kind(scrub(f"{what}: {type(exc).__name__}: {exc}", self._secrets))
