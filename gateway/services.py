"""The process-wide services one gateway process runs with, and what a request sees of them.

Built once at start-up (see :func:`start`) and shared by every request; translators receive a
:class:`RequestEnv` as the opaque environment of :mod:`gateway.jmap.dispatch`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from gateway.auth import Authenticator, Principal
from gateway.cache.account import AccountIndex
from gateway.cache.blobs import BlobStore
from gateway.cache.limits import ConcurrencyLimiter
from gateway.cache.push_subscriptions import PushSubscriptions
from gateway.cache.pushbus import PushBus
from gateway.cache.schedule import Schedule
from gateway.cache.store import SecretSource, Store, fixed_secret
from gateway.cache.throttle import LoginThrottle
from gateway.cache.watches import WatchStore
from gateway.config import Settings
from gateway.credentials import Credentials
from gateway.discovery import Discovery, SessionSource
from gateway.env import RequestEnv
from gateway.imap.connection import greet
from gateway.imap.pool import ImapPool
from gateway.jmap.capabilities import CoreLimits
from gateway.jmap.dispatch import MethodRegistry
from gateway.jmap.session import AccountInfo, PersonalSession
from gateway.metrics import Metrics
from gateway.push.background import BackgroundLogins, background_watching
from gateway.push.deliveries import Deliveries, claim_lease_seconds
from gateway.push.enqueue import Enqueuer
from gateway.push.hub import PushHub
from gateway.push.keeper import CredentialKeeper
from gateway.push.states import current_states
from gateway.push.watch import WatchManager
from gateway.readiness import Readiness
from gateway.smtp.connection import Authorization
from gateway.smtp.extensions import Extensions
from gateway.smtp.sender import SmtpSender
from gateway.sync.catch_up import CatchUp
from gateway.translators import (
    core,
    email,
    identity,
    mailbox,
    push_subscription,
    submission,
    websocket,
)
from gateway.translators.core import core_limits
from gateway.translators.email.blob_ids import message_blob_id
from gateway.translators.spec import Spec
from gateway.translators.spec import method_registry as registry_of
from gateway.translators.submission.capability import delayed_send_possible
from gateway.translators.submission.delayed import DelayedSender
from gateway.upstream import (
    background_authorization,
    imap_endpoint,
    imap_pool,
    request_authorization,
    smtp_sender,
)
from gateway.usernames import UsernameFormat
from gateway.webpush.client import PushClient
from gateway.webpush.destinations import DestinationPolicy
from gateway.webpush.vapid import Vapid

log = logging.getLogger(__name__)

# An API request holds its slot for at most this long if its process dies mid-request.
CONCURRENCY_LEASE_SECONDS = 300.0


# Every translator package, by its spec (gateway.translators.spec); the Session lists the
# capabilities in this order.
SPECS: tuple[Spec, ...] = (
    core.SPEC,
    mailbox.SPEC,
    email.SPEC,
    submission.SPEC,
    identity.SPEC,
    websocket.SPEC,
    *push_subscription.SPECS,
)


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    pool: ImapPool
    authenticator: Authenticator
    registry: MethodRegistry[RequestEnv]
    limits: CoreLimits
    # The Session of every user, built from the specs' capability objects at start-up and
    # again when the SMTP server's extensions become known.
    session_source: SessionSource
    api_limiter: ConcurrencyLimiter
    upload_limiter: ConcurrencyLimiter
    blobs: BlobStore
    catch_up: CatchUp
    metrics: Metrics
    readiness: Readiness
    # The submission server (None without GATEWAY_SMTP_URL) and what asks its EHLO.
    smtp: SmtpSender | None = None
    discovery: Discovery | None = None
    # The sender of held (delayed) submissions; None without GATEWAY_SMTP_URL.
    delayed: DelayedSender | None = None
    # This process among the replicas (push announcements name their origin with it).
    replica_id: str = field(default_factory=lambda: secrets.token_hex(8))
    # The push hub; it needs the services it belongs to, so start() attaches it.
    push: PushHub = field(init=False, repr=False)
    # Credentials of push listeners, in memory only, for the watchers (push/keeper.py).
    keeper: CredentialKeeper = field(init=False, repr=False)
    # Which accounts this replica watches upstream, and their watchers (push/watch.py).
    watches: WatchManager = field(init=False, repr=False)
    # Push subscriptions (RFC 8620 7.2): what turns this process's commits into pending pushes,
    # and the worker that sends the due ones (push/enqueue.py, push/deliveries.py).
    enqueuer: Enqueuer = field(init=False, repr=False)
    deliveries: Deliveries = field(init=False, repr=False)

    def index(self, account_id: str) -> AccountIndex:
        """An account's index, for work without a request (a push watcher's catch-up)."""
        return AccountIndex.of(
            self.store.client, account_id, self.settings.submission_retention_seconds
        )

    @property
    def sessions(self) -> PersonalSession:
        return self.session_source.session

    @property
    def smtp_extensions(self) -> Extensions:
        """The submission server's EHLO answer; empty while unknown."""
        return self.session_source.discovered.smtp_extensions or Extensions()

    def authorization(self, credentials: Credentials) -> Authorization:
        """How a send made during the user's own request authenticates (GATEWAY_SMTP_AUTH)."""
        return request_authorization(self.settings, credentials)

    def background_authorization(self, username: str) -> Authorization | None:
        """How a send without the user present (delayed send) authenticates; None: it
        cannot, and delayed sending is off (maxDelayedSend 0)."""
        if self.settings.max_delayed_send_seconds <= 0:
            return None
        return background_authorization(self.settings, username)

    @property
    def capabilities(self) -> dict[str, dict[str, Any]]:
        """The Session's server-wide capabilities: only what is implemented."""
        return self.sessions.capabilities

    def accounts(self, principal: Principal) -> dict[str, AccountInfo]:
        """The accounts this caller may use: exactly their own."""
        return self.sessions.accounts(principal.username, principal.account_id)

    def session(self, principal: Principal) -> dict[str, Any]:
        return self.sessions.build(principal.username, principal.account_id)

    def session_state(self, principal: Principal) -> str:
        """``session(principal)["state"]``, without building the Session."""
        return self.sessions.state(principal.username, principal.account_id)


def method_registry() -> MethodRegistry[RequestEnv]:
    return registry_of(SPECS)


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
    source = SessionSource(SPECS, settings, delayed_send_possible(settings))
    sender = smtp_sender(settings, metrics)
    discovery = Discovery(sender, store, source) if sender is not None else None
    if discovery is not None:
        await discovery.start()
    delayed = (
        None
        if sender is None
        else DelayedSender(
            Schedule(store.client),
            sender,
            lambda username: services.background_authorization(username),
            lambda account_id: AccountIndex.of(
                store.client, account_id, settings.submission_retention_seconds
            ),
            on_outcome=metrics.delayed_send,
        )
    )
    services = Services(
        settings=settings,
        store=store,
        pool=pool,
        authenticator=authenticator,
        registry=source.catalog.registry,
        limits=core_limits(settings),
        session_source=source,
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
        catch_up=CatchUp(
            settings.sync_interval_seconds,
            report_blob_id=message_blob_id if settings.smtp is not None else None,
        ),
        metrics=metrics,
        readiness=Readiness(
            store,
            endpoint,
            settings.ready_cache_seconds,
            on_report=lambda report: metrics.ready.set(report.ready),
        ),
        smtp=sender,
        discovery=discovery,
        delayed=delayed,
    )
    bus = PushBus(store.client, services.replica_id)
    keeper = CredentialKeeper(settings.push_credentials_seconds)
    watch_store = WatchStore(store.client)
    background = (
        BackgroundLogins(settings, pool, secret, watch_store)
        if background_watching(settings)
        else None
    )
    watches = WatchManager(services, watch_store, keeper, bus, background)
    hub = PushHub(
        services,
        bus,
        watches,
        max_listeners=settings.push_max_connections,
        max_per_account=settings.push_max_per_account,
    )
    # Frozen: the push fields are set after construction (the hub and watchers need services).
    object.__setattr__(services, "push", hub)
    object.__setattr__(services, "keeper", keeper)
    object.__setattr__(services, "watches", watches)
    await hub.start()
    await watches.start()
    start_deliveries(services)
    if delayed is not None:
        # Held submissions of every account, this replica's share of them (cache.schedule).
        delayed.start()
    return services


def start_deliveries(services: Services) -> None:
    """Push subscriptions: hear this process's commits, and send what falls due."""
    settings = services.settings
    subscriptions = PushSubscriptions.of(services.store)
    deliveries = Deliveries(
        subscriptions,
        PushClient.from_settings(settings),
        DestinationPolicy.from_settings(settings),
        Vapid.from_settings(settings),
        services.metrics,
        ttl_seconds=settings.webpush_ttl_seconds,
        min_interval_seconds=settings.webpush_min_interval_seconds,
        lease_seconds=claim_lease_seconds(settings.webpush_timeout_seconds),
        states=lambda account_id, types: current_states(services, account_id, types),
    )
    enqueuer = Enqueuer(
        subscriptions,
        services.metrics,
        deliveries.wake,
        min_interval_seconds=settings.webpush_min_interval_seconds,
    )
    object.__setattr__(services, "enqueuer", enqueuer)
    object.__setattr__(services, "deliveries", deliveries)
    enqueuer.start()
    deliveries.start()


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
    """LOGOUT every upstream connection, QUIT the idle SMTP sessions, then let go of Redis
    (after the last request)."""

    async def stop_push() -> None:
        # Watchers LOGOUT and let their leases go (announced, so other replicas take over)
        # while the bus is up; then push streams end (SHUTDOWN), and the changes committed
        # last are announced and enqueued for push subscriptions (2 s each, side by side).
        await services.watches.stop()
        await asyncio.gather(services.push.stop(), services.enqueuer.stop())

    # Side by side, so that their bounds (4 + 2 s; 5 s; 3 s) do not add up past the 10 s the
    # pod's grace period leaves after the shutdown timeout (README, "Deployment").
    stops = [stop_push(), services.catch_up.stop(), services.deliveries.stop()]
    if services.delayed is not None:
        # Claims nothing more, lets its sends finish or gives them back (delayed.py).
        stops.append(services.delayed.stop())
    await asyncio.gather(*stops)
    if services.discovery is not None:
        await services.discovery.stop()
    if services.smtp is not None:
        await services.smtp.close()
    await services.pool.close()
    await services.store.close()
