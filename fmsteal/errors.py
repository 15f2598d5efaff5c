"""Errors meant for the user: each message says what went wrong and what to do."""


class FmstealError(Exception):
    """Base class of every error fmsteal raises on purpose."""


class ConfigError(FmstealError, ValueError):
    """A configuration value is wrong; the message names it and the valid choices."""


class DataError(FmstealError):
    """A dataset or image folder is missing, empty or malformed."""


class WeightsUnavailable(FmstealError):
    """Pretrained weights for a backbone cannot be loaded here."""


class BudgetExceeded(FmstealError):
    """A query would take the victim past its query budget."""


class DeviceUnavailable(FmstealError):
    """The requested device (e.g. CUDA) does not exist on this machine."""


class Cancelled(FmstealError):
    """The run was cancelled by its user."""


class QueryRefused(FmstealError):
    """The API stopped answering this client (a detection defence flagged its queries as an attack)."""
