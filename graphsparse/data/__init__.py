from .root import ENV_VAR, DatasetNotFoundError, get_data_root, missing_dataset, writable_cache

__all__ = ["ENV_VAR", "DatasetNotFoundError", "get_data_root", "missing_dataset",
           "writable_cache"]
