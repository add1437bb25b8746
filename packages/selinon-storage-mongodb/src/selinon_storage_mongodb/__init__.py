"""Selinon storage adapter for MongoDB (pymongo): one document per task id, in one collection."""

from selinon_storage_mongodb.storage import MongoDB

__version__ = "0.2.0"

__all__ = ["MongoDB", "__version__"]
