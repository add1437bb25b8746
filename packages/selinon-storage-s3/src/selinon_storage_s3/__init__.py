"""Selinon storage adapter for Amazon S3 and S3-compatible object stores (MinIO, Ceph), through boto3.

``classname: S3Storage`` and ``classname: S3`` name the same adapter (Selinon 1.x used both names).
"""

from selinon_storage_s3.storage import S3Storage, S3Unavailable, object_key

#: Selinon 1.x's class name, for ``import: selinon_storage_s3`` with ``classname: S3``.
S3 = S3Storage

__version__ = "0.2.0"

__all__ = ["S3", "S3Storage", "S3Unavailable", "__version__", "object_key"]
