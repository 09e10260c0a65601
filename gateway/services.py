"""The process-wide services one gateway process runs with, and what a request sees of them.

Built once at start-up (see :func:`start`) and shared by every request; translators receive a
:class:`RequestEnv` as the opaque environment of :mod:`gateway.jmap.dispatch`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.auth import Authenticator, Principal
from gateway.cache.blobs import BlobStore
from gateway.cache.changes import CannotCalculateChanges
from gateway.cache.limits import ConcurrencyLimiter
from gateway.cache.locks import LockTimeout
from gateway.cache.store import STORE_UNAVAILABLE, SecretSource, Store, fixed_secret
from gateway.cache.throttle import LoginThrottle
from gateway.config import Settings
from gateway.env import RequestEnv
from gateway.imap.connection import greet
from gateway.imap.errors import CommandFailed, ImapError
from gateway.imap.pool import ImapPool
from gateway.jmap import capabilities as caps
from gateway.jmap.capabilities import CoreLimits
from gateway.jmap.core_methods import register_core
from gateway.jmap.dispatch import MethodRegistry
from gateway.jmap.errors import MethodError
from gateway.jmap.query import SUPPORTED_COLLATIONS
from gateway.jmap.session import AccountInfo, build_session
from gateway.metrics import Metrics
from gateway.readiness import Readiness
from gateway.sync.catch_up import CatchUp
from gateway.translators import blob, email, mailbox
from gateway.translators.email.filtering import SORTS as EMAIL_SORTS
from gateway.translators.mailbox.set import MAX_NAME_OCTETS
from gateway.upstream import imap_endpoint, imap_pool
from gateway.usernames import UsernameFormat

log = logging.getLogger(__name__)

# An API request holds its slot for at most this long if its process dies mid-request.
CONCURRENCY_LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    pool: ImapPool
    authenticator: Authenticator
    registry: MethodRegistry[RequestEnv]
    limits: CoreLimits
    api_limiter: ConcurrencyLimiter
    upload_limiter: ConcurrencyLimiter
    blobs: BlobStore
    catch_up: CatchUp
    metrics: Metrics
    readiness: Readiness

    @property
    def capabilities(self) -> dict[str, dict[str, Any]]:
        """The Session's server-wide capabilities: only what is implemented."""
        return {caps.CORE: self.limits.to_capability(), caps.MAIL: {}}

    def account_capabilities(self) -> dict[str, dict[str, Any]]:
        """RFC 8621 1.3.1: the mail capability of a user's own account."""
        return {
            caps.MAIL: {
                "maxMailboxesPerEmail": self.settings.max_mailboxes_per_email,
                "maxMailboxDepth": None,
                "maxSizeMailboxName": MAX_NAME_OCTETS,
                "maxSizeAttachmentsPerEmail": self.settings.max_size_attachments_per_email,
                "emailQuerySortOptions": sorted(EMAIL_SORTS),
                "mayCreateTopLevelMailbox": True,
            }
        }

    def accounts(self, principal: Principal) -> dict[str, AccountInfo]:
        """The accounts this caller may use: exactly their own."""
        account = AccountInfo(
            name=principal.username,
            is_personal=True,
            is_read_only=False,
            account_capabilities=self.account_capabilities(),
        )
        return {principal.account_id: account}

    def session(self, principal: Principal) -> dict[str, Any]:
        return build_session(
            username=principal.username,
            accounts=self.accounts(principal),
            primary_accounts={caps.MAIL: principal.account_id},
            capabilities=self.capabilities,
            base_url=self.settings.base_url,
        )


def map_error(exc: Exception) -> MethodError | None:
    """What lower-layer failures mean to a JMAP client (RFC 8620 3.6.2)."""
    if isinstance(exc, CannotCalculateChanges):
        return MethodError("cannotCalculateChanges", str(exc))
    if isinstance(exc, CommandFailed):
        # The upstream refused something the gateway asked; its words may name mailboxes.
        return MethodError("serverFail", "The mail server refused the operation.")
    if isinstance(exc, (ImapError, LockTimeout, *STORE_UNAVAILABLE)):
        return MethodError(
            "serverUnavailable",
            "The mail server or the gateway's state store is unavailable; try again later.",
        )
    return None


def core_limits(settings: Settings) -> CoreLimits:
    return CoreLimits(
        max_size_upload=settings.max_size_upload,
        max_concurrent_upload=settings.max_concurrent_upload,
        max_size_request=settings.max_size_request,
        max_concurrent_requests=settings.max_concurrent_requests,
        max_calls_in_request=settings.max_calls_in_request,
        max_objects_in_get=settings.max_objects_in_get,
        max_objects_in_set=settings.max_objects_in_set,
        collation_algorithms=SUPPORTED_COLLATIONS,
        max_size_response=settings.max_size_response,
    )


def method_registry() -> MethodRegistry[RequestEnv]:
    registry: MethodRegistry[RequestEnv] = MethodRegistry()
    register_core(registry)
    mailbox.register(registry)
    email.register(registry)
    blob.register(registry)
    return registry


async def start(settings: Settings, metrics: Metrics) -> Services:
    """Wire Redis, the upstream pool and the authenticator (nothing is sent yet)."""
    sentinel_password = settings.redis_sentinel_password
    store = Store.from_url(
        settings.redis_url,
        observer=metrics.redis,
        sentinel_password=sentinel_password.get_secret_value() if sentinel_password else None,
    )
    secret = server_secret(settings, store)
    endpoint = imap_endpoint(settings, metrics)
    pool = imap_pool(settings, endpoint, on_greeting=lambda caps: authenticator.note_greeting(caps))
    pool.start()
    metrics.watch_pool(pool)

    authenticator = Authenticator(
        pool,
        secret,
        LoginThrottle(
            store.client, settings.login_failures_per_address, settings.login_failures_per_username
        ),
        cache_seconds=settings.auth_cache_seconds,
        max_concurrent_logins=max(1, settings.pool_max_total // 4),
        wait_seconds=settings.pool_wait_timeout,
        username_format=UsernameFormat(settings.username_format),
        proxies=settings.proxy_policy,
        greet=lambda: greet(endpoint),
        username_claim=settings.oauth_username_claim,
    )
    return Services(
        settings=settings,
        store=store,
        pool=pool,
        authenticator=authenticator,
        registry=method_registry(),
        limits=core_limits(settings),
        api_limiter=ConcurrencyLimiter(
            store.client, "api", settings.max_concurrent_requests, CONCURRENCY_LEASE_SECONDS
        ),
        upload_limiter=ConcurrencyLimiter(
            store.client, "upload", settings.max_concurrent_upload, CONCURRENCY_LEASE_SECONDS
        ),
        blobs=BlobStore(
            store.client,
            settings.upload_ttl_seconds,
            secret=secret,
            quota=settings.upload_quota_octets,
        ),
        catch_up=CatchUp(settings.sync_interval_seconds),
        metrics=metrics,
        readiness=Readiness(
            store,
            endpoint,
            settings.ready_cache_seconds,
            on_report=lambda report: metrics.ready.set(report.ready),
        ),
    )


def server_secret(settings: Settings, store: Store) -> SecretSource:
    """GATEWAY_SECRET, or the secret kept in Redis, read each time (see Store.server_secret)."""
    if settings.secret is not None:
        return fixed_secret(settings.secret.get_secret_value().encode())
    log.warning(
        "GATEWAY_SECRET is not set: using the secret kept in Redis, read on every request. "
        "If Redis loses its data, account ids may change; set GATEWAY_SECRET in production."
    )
    last: bytes | None = None

    async def kept() -> bytes:
        # After Redis lost it, the secret this replica knew is written back (if nobody was first).
        nonlocal last
        last = await store.server_secret(restore=last)
        return last

    return kept


async def stop(services: Services) -> None:
    """LOGOUT every upstream connection, then let go of Redis (after the last request)."""
    await services.pool.close()
    await services.store.close()
