"""Exceptions with messages meant for users: what went wrong and how to fix it."""


class DualSRError(Exception):
    """Base class of every error dualsr reports to users as one clear line."""


class CheckpointError(DualSRError):
    """A checkpoint is missing, truncated, or not a DRN checkpoint."""


class ImageError(DualSRError):
    """An image cannot be read, decoded or written."""


class ConfigError(DualSRError):
    """A configuration file or value is invalid; the message names the key."""


class DownloadError(DualSRError):
    """Released weights could not be fetched or verified (network, truncation, checksum, the
    wrong file); the message names the URL and how to supply the file locally instead."""
