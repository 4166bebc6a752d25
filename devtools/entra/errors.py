"""Errors answered the way each real service words them, so any layer can raise them."""

from __future__ import annotations

import datetime
import uuid

ENTRA_ERROR_PAGE = "https://login.microsoftonline.com/error?code={code}"


class EntraError(Exception):
    """An Entra error: an OAuth ``error``, an AADSTS code, and the description that starts with it."""

    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(f"AADSTS{code}: {message}")
        self.status = status
        self.error = error
        self.code = code
        self.message = message

    def body(self, trace_id: str, correlation_id: str) -> dict:
        timestamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.message} Trace ID: {trace_id} "
            f"Correlation ID: {correlation_id} Timestamp: {timestamp}",
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": ENTRA_ERROR_PAGE.format(code=self.code),
        }


def invalid_request(code: int, message: str) -> EntraError:
    return EntraError(400, "invalid_request", code, message)


def invalid_client(code: int, message: str) -> EntraError:
    return EntraError(401, "invalid_client", code, message)


def missing_parameter(name: str) -> EntraError:
    return invalid_request(900144, f"The request body must contain the following parameter: '{name}'.")


def tenant_not_found(tenant: str, error: str) -> EntraError:
    """Discovery documents answer ``invalid_tenant``, the token endpoint ``invalid_request``."""
    return EntraError(
        400,
        error,
        90002,
        (
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
            "correct cloud. Check with your subscription administrator, this may happen if there are no active "
            "subscriptions for the tenant."
        ),
    )


class AppServiceError(Exception):
    """An error of App Service's managed-identity endpoint: ``{"statusCode", "message", "correlationId"}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict:
        return {"statusCode": self.status, "message": self.message, "correlationId": str(uuid.uuid4())}


class AdminError(Exception):
    """A refusal of the local administration API (no real service has one): ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
