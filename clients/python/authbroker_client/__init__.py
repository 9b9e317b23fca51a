"""authbroker-client: ask authbroker which credential to use, report how it went, fail open when it is down."""

from authbroker_client.client import AsyncClient, AuthbrokerError, AuthbrokerUnavailable, Client
from authbroker_client.failopen import CircuitBreaker
from authbroker_client.outcomes import (
    OUTCOME_RULES,
    OUTCOMES,
    classify_exception,
    classify_status,
    parse_retry_after,
)
from authbroker_client.types import (
    BulkResetResult,
    Candidate,
    Credential,
    Event,
    EventPage,
    Failover,
    Override,
    ProfileState,
    ProviderSnapshot,
    ReportResult,
    ResetResult,
    Selection,
    SessionState,
)

__all__ = [
    "OUTCOMES", "OUTCOME_RULES", "AsyncClient", "AuthbrokerError", "AuthbrokerUnavailable", "BulkResetResult",
    "Candidate", "CircuitBreaker", "Client", "Credential", "Event", "EventPage", "Failover", "Override",
    "ProfileState", "ProviderSnapshot", "ReportResult", "ResetResult", "Selection", "SessionState",
    "classify_exception", "classify_status", "parse_retry_after",
]
__version__ = "0.1.0"
