"""Every failure a caller can meet, as a typed error whose text says what happened and what to do.

The Knock client raises these; the server turns them into MCP errors in one place. Each message is
written for the person or model reading the tool result: it names the cause and the next step, and
it never contains the API key (the server redacts it again before anything leaves the process).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta


class KnockMcpError(Exception):
    """Base class: `str(error)` is the complete, actionable message."""


class ConfigurationError(KnockMcpError):
    """One or more environment variables hold values the server cannot use."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"- {problem}" for problem in self.problems)
        super().__init__(
            f"knock-mcp is not configured correctly:\n{lines}\n"
            "Fix the environment variables in your MCP client's configuration for knock-mcp, "
            "then restart the server."
        )


class MissingApiKey(KnockMcpError):
    """No secret key was configured, so no call to Knock can be made."""

    def __init__(self) -> None:
        super().__init__(
            "KNOCK_API_KEY is not set, so knock-mcp cannot call Knock. Create a secret key (sk_...) in "
            'the Knock dashboard under Platform > API keys, add KNOCK_API_KEY to the "env" of '
            "knock-mcp in your MCP client's configuration, and restart the server. "
            "To try the tools without an account, start the server with --demo."
        )


class InvalidOperationId(KnockMcpError):
    """The caller's id is not a UUID; refused before any request is made."""

    def __init__(self, value: str, suggestion: str | None) -> None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        hint = f" Did you mean {suggestion}?" if suggestion else ""
        super().__init__(
            f"{shown!r} is not a bulk operation id. Ids are UUIDs such as "
            f"123e4567-e89b-12d3-a456-426614174000: the `id` field that the bulk endpoint "
            f"(for example POST /v1/users/bulk/identify) returned when the job was started.{hint}"
        )


class InvalidCursor(KnockMcpError):
    """A `list_failed_items` cursor that does not belong to this operation and collection."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"This cursor cannot be used: {problem}. Pass the next_cursor of the previous "
            "list_failed_items result unchanged, with the same id, or leave cursor out to start from the "
            "first failed item."
        )


class AuthenticationFailed(KnockMcpError):
    """Knock rejected the key (401)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Knock rejected the API key (401 Unauthorized{_detail(detail)}). Check that KNOCK_API_KEY "
            "holds a current secret key (sk_...) copied whole from the Knock dashboard "
            "(Platform > API keys), then restart knock-mcp."
        )


class PermissionDenied(KnockMcpError):
    """The key is valid but may not read bulk operations (403)."""

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Knock refused access (403 Forbidden{_detail(detail)}). The key in KNOCK_API_KEY is valid "
            "but not allowed to read this; use a secret key (sk_...) of the environment that ran the "
            "bulk operation, and check KNOCK_BRANCH if you set it."
        )


class OperationNotFound(KnockMcpError):
    """Knock has no such operation in the key's environment (404)."""

    def __init__(self, operation_id: str, branch: str | None) -> None:
        self.operation_id = operation_id
        where = f"environment and branch {branch!r}" if branch else "environment"
        super().__init__(
            f"Knock has no bulk operation {operation_id} in this API key's {where}. Bulk operation ids "
            "belong to one Knock environment: a development key cannot see production operations. "
            "Check the id, and that KNOCK_API_KEY is the secret key of the environment that started the job."
        )


class RateLimited(KnockMcpError):
    """Knock kept answering 429, or asked for a wait longer than the call may last."""

    def __init__(self, attempts: int, retry_after: float | None, now: datetime | None = None) -> None:
        # Kept so that a poll loop can hold off as long as Knock asked, not just report it.
        self.retry_after = retry_after
        super().__init__(
            f"Knock is rate limiting this API key (429 Too Many Requests, {_attempts(attempts)}). "
            f"{_when_to_retry(retry_after, now)}"
        )


class KnockUnavailable(KnockMcpError):
    """Knock could not be reached or kept failing on its side (timeouts, connection errors, 5xx)."""

    def __init__(
        self, cause: str, attempts: int, retry_after: float | None = None, now: datetime | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Knock could not answer: {cause} ({_attempts(attempts)}). This is on Knock's side or the "
            f"network's, not a problem with the id or key. {_when_to_retry(retry_after, now)}"
        )


class UnexpectedStatus(KnockMcpError):
    """Knock answered with a status this endpoint should not give (a 4xx other than the above, a 3xx)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(
            f"Knock answered HTTP {status}{_detail(detail, sep=': ')}, which this request should not get. "
            "If KNOCK_BASE_URL points at a proxy, check that it forwards GET /v1/bulk_operations/{id} "
            "to Knock unchanged; otherwise report this to the knock-mcp maintainers."
        )


class InvalidResponse(KnockMcpError):
    """Knock's answer could not be read: not JSON, too large, or about another operation."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f"Knock's answer could not be used: {problem}. Try again; if it persists, check "
            "KNOCK_BASE_URL (it must point at Knock's API, default https://api.knock.app)."
        )


class SchemaMismatch(KnockMcpError):
    """Knock's JSON does not match the BulkOperation schema; names the offending fields."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        listed = "; ".join(self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(
            f"Knock's answer does not match the bulk operation schema: {listed}{more}. Nothing was "
            "guessed or dropped. Knock may have changed its API: report this to the knock-mcp "
            "maintainers with the field names above."
        )


def _detail(detail: str, sep: str = ": ") -> str:
    return f"{sep}{detail}" if detail else ""


def _attempts(attempts: int) -> str:
    return "1 attempt" if attempts == 1 else f"{attempts} attempts"


def _when_to_retry(retry_after: float | None, now: datetime | None) -> str:
    if retry_after is None:
        return "Wait a minute, then try again."
    if retry_after < 1:
        return "Knock said it may be retried at once: try again now."
    at = (now or datetime.now(UTC)) + timedelta(seconds=retry_after)
    return f"Knock asked to wait {retry_after:,.0f} s: try again after {at:%Y-%m-%d %H:%M:%S} UTC."
