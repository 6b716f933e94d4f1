"""Errors that map onto HTTP answers of the form ``{"error": "..."}``."""


class ServiceError(Exception):
    """An error with the HTTP status it is answered with."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(ServiceError):
    """The client sent something the model or the protocol cannot accept."""

    status_code = 400


class NotFoundError(ServiceError):
    """Unknown model or version."""

    status_code = 404


class PayloadTooLargeError(ServiceError):
    """The request body is over the configured limit."""

    status_code = 413


class UnavailableError(ServiceError):
    """The model exists but has no version ready to serve."""

    status_code = 503


class OverloadedError(ServiceError):
    """As many inference requests as allowed are in flight already."""

    status_code = 503

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the service is handling its limit of {limit} inference requests "
            "(max_inflight_requests); retry shortly"
        )


class BackendError(ServiceError):
    """onnxruntime failed on a request that passed validation."""

    status_code = 500


class LoadError(Exception):
    """A model or one of its versions could not be loaded."""
