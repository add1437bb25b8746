"""Redis storage adapter for Selinon: ``classname: Redis`` in ``nodes.yaml``."""

from selinon_storage_redis.storage import Redis

__all__ = ["Redis"]
__version__ = "0.2.0"
