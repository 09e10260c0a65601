"""Settings from ``GATEWAY_*`` environment variables (and the same names as CLI flags).

One table, :class:`Settings`, drives the environment, the command-line flags and the README's
configuration table, so the three cannot drift apart. A bad value stops start-up with one line
that names the variable: operators read that line in a pod's log, not a pydantic traceback.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.cache.blobs import UPLOAD_OVERHEAD
from gateway.cache.connect import (
    is_cluster_url,
    is_sentinel_url,
    parse_cluster_url,
    parse_sentinel_url,
    split_url,
)
from gateway.origin import FORWARDED_HEADERS, ProxyPolicy
from gateway.senders import SenderPolicy, check_domain
from gateway.usernames import UsernameFormat

ENV_PREFIX = "GATEWAY_"


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line naming the variable."""


class TlsMode(enum.Enum):
    """How the upstream connection is protected."""

    PLAIN = "plain"
    STARTTLS = "starttls"
    IMPLICIT = "implicit"


@dataclass(frozen=True)
class UpstreamUrl:
    """An upstream server address: ``imap://h:p``, ``imap://h:p?starttls``, ``imaps://h:p``."""

    host: str
    port: int
    tls: TlsMode

    def __str__(self) -> str:
        return f"{self.host}:{self.port} ({self.tls.value})"


def master_login_separator(value: str) -> str | None:
    """GATEWAY_IMAP_MASTER_LOGIN's separator (``separator:<c>``), or None for ``authzid``;
    ValueError for anything else. One printable character: it joins two names in a LOGIN."""
    if value == "authzid":
        return None
    kind, _, separator = value.partition(":")
    if kind != "separator" or len(separator) != 1 or not "!" <= separator <= "~":
        raise ValueError("must be authzid or separator:<one printable character>")
    if separator in '\\"':
        raise ValueError("the separator cannot be a quote or a backslash")
    return separator


# GATEWAY_SMTP_AUTH: the user's own credentials, or no AUTH at all.
SMTP_AUTH_MODES = ("user", "none")

# scheme -> (TLS mode, default port). SMTP defaults to the submission ports (RFC 6409, RFC 8314):
# the gateway submits users' mail, it does not relay.
_SCHEMES: dict[str, dict[str, tuple[TlsMode, int]]] = {
    "imap": {"imap": (TlsMode.PLAIN, 143), "imaps": (TlsMode.IMPLICIT, 993)},
    "smtp": {"smtp": (TlsMode.PLAIN, 587), "smtps": (TlsMode.IMPLICIT, 465)},
}


def parse_upstream_url(value: str, protocol: str) -> UpstreamUrl:
    """Parse an upstream URL for ``protocol`` ("imap" or "smtp"), or raise ValueError."""
    schemes = _SCHEMES[protocol]
    parts = split_url(value.strip())
    if parts.scheme not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ValueError(f"must start with {allowed}")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (users log in with their own)")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("must be scheme://host[:port] with no path")
    if not parts.hostname:
        raise ValueError("has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None
    tls, default_port = schemes[parts.scheme]
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(options) - {"starttls"}
    if unknown:
        raise ValueError(f"has unknown option {sorted(unknown)[0]!r} (only ?starttls)")
    if "starttls" in options:
        if tls is TlsMode.IMPLICIT:
            raise ValueError(f"{parts.scheme}:// is already TLS; ?starttls applies to plain URLs")
        tls = TlsMode.STARTTLS
    return UpstreamUrl(host=parts.hostname, port=port or default_port, tls=tls)


class Settings(BaseSettings):
    """Every setting of the gateway. Only the upstream IMAP URL and the Redis URL are required."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    imap_url: str = Field(
        description="Upstream IMAP server: imap://host:port, imap://host:port?starttls, "
        "imaps://host:port (required)",
    )
    redis_url: str = Field(
        description="Redis holding the gateway's state, shared by all replicas: redis://, "
        "rediss:// or unix:// for one server; redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT]"
        "/MASTER[/DB] (rediss+sentinel:// for TLS) for a master found through Sentinel; "
        "redis+cluster://[:PASSWORD@]HOST:PORT[,HOST:PORT] (rediss+cluster:// for TLS) for a "
        "Redis Cluster, naming startup nodes (required)",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None,
        description="Password of the Sentinels (not of the master, which comes from "
        "GATEWAY_REDIS_URL); unset: Sentinels are asked without one",
    )
    smtp_url: str | None = Field(
        None,
        description="Upstream SMTP submission server: smtp://host:port, smtp://host:port?starttls, "
        "smtps://host:port (default ports 587 and 465); unset: no submission",
    )
    smtp_auth: str = Field(
        "user",
        description="How the gateway logs in to GATEWAY_SMTP_URL: user (as the user whose "
        "request it is, with their credentials) or none (no AUTH: a relay that trusts the "
        "gateway, which then alone decides who may send as whom)",
    )
    smtp_service_username: str | None = Field(
        None,
        description="A service account the SMTP server lets send as any user (AUTH PLAIN with "
        "the user as authorization identity, RFC 4616), for sending without the user present "
        "(delayed sending); unset: delayed sending only with GATEWAY_SMTP_AUTH=none",
    )
    smtp_service_password: SecretStr | None = Field(
        None, description="Password of GATEWAY_SMTP_SERVICE_USERNAME"
    )
    max_delayed_send_seconds: int = Field(
        604800,
        ge=0,
        description="Longest delay a client may ask for before a message is sent "
        "(maxDelayedSend, RFC 8621 1.3.2); 0, or no way to send without the user present "
        "(see GATEWAY_SMTP_SERVICE_USERNAME), turns delayed sending off",
    )
    mail_domain: str | None = Field(
        None,
        description="Mail domain of users whose login is not an address: their own address, "
        "and so their default Identity, is LOGIN@MAIL_DOMAIN (unset: such users have no "
        "default Identity)",
    )
    identity_addresses: str = Field(
        "{address}",
        description="Addresses a user may send from (Identity create, EmailSubmission), "
        "separated by commas: {address} the user's own address, {local} and {domain} its parts, "
        "* any run of characters but @ (e.g. {address},{local}+*@{domain}); anything else is "
        "forbiddenFrom",
    )
    public_url: str | None = Field(
        None,
        description="Base URL clients use to reach the gateway, used in the Session's URLs "
        "(default http://HOST:PORT)",
    )
    host: str = Field("127.0.0.1", description="Address to listen on")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on")
    metrics_port: int = Field(
        9090,
        ge=0,
        le=65535,
        description="Port of the Prometheus metrics endpoint (/metrics), on the same address "
        "as the API (0: no metrics endpoint)",
    )
    tls_ca_file: Path | None = Field(
        None,
        description="CA bundle to verify the upstream IMAP/SMTP certificates (default: system)",
    )
    tls_insecure: bool = Field(
        False, description="Do not verify upstream certificates. For tests only, never production"
    )
    secret: SecretStr | None = Field(
        None,
        description="Key for keyed hashes (account ids); unset: generated once and kept in Redis "
        "so every replica shares it",
    )
    pool_max_per_user: int = Field(
        4, ge=1, description="Upstream IMAP connections one user may hold at once"
    )
    pool_max_total: int = Field(
        100,
        ge=1,
        description="Upstream IMAP connections of this process for requests, all users "
        "together; push watchers hold one more connection per watched account, outside this "
        "limit",
    )
    pool_idle_timeout: float = Field(
        300.0, gt=0, description="Seconds an unused upstream connection is kept before LOGOUT"
    )
    pool_wait_timeout: float = Field(
        10.0, gt=0, description="Seconds a request waits for a free upstream connection"
    )
    imap_connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to connect, greet, start TLS and log in upstream"
    )
    imap_command_timeout: float = Field(
        60.0, gt=0, description="Seconds one upstream IMAP command may take"
    )
    sync_interval_seconds: float = Field(
        1.0,
        ge=0,
        description="Seconds after an account caught up with the upstream during which its "
        "requests trust the index without asking again (0: every request asks)",
    )
    sync_wait_seconds: float = Field(
        20.0,
        gt=0,
        description="Seconds a request waits for its account's catch-up. Past it, during the "
        "account's first indexing the request gets serverUnavailable with Retry-After while "
        "the indexing goes on; a later catch-up is answered from the index as it stands",
    )
    auth_cache_seconds: float = Field(
        60.0, ge=0, description="Seconds a successful credential check is remembered (0: never)"
    )
    username_format: str = Field(
        "%u",
        description="How the upstream normalises user names, in Dovecot's words: %u the name, "
        "%n the part before @, %d the part after, %Lu %Ln %Ld lower-cased (e.g. %Ln for a "
        "Dovecot that lets alice, ALICE and alice@any in as alice). Names it maps to one text "
        "share failed-login counts, and one account on upstreams that keep no INBOX id",
    )
    trusted_proxies: str | None = Field(
        None,
        description="Addresses or CIDR networks of the proxies in front of the gateway, "
        "separated by commas; only for requests from them is the client's address read from "
        "GATEWAY_FORWARDED_HEADER (unset: the socket's peer is the client)",
    )
    forwarded_header: str = Field(
        "X-Forwarded-For",
        description="The header the trusted proxies write the client's address into: "
        "X-Forwarded-For or Forwarded (RFC 7239)",
    )
    login_failures_per_address: int = Field(
        30,
        ge=0,
        description="Failed logins from one client address (IPv6: one /64) in 5 minutes, "
        "counted across replicas, before its next attempts get 429 (0: no limit)",
    )
    login_failures_per_username: int = Field(
        10,
        ge=0,
        description="Failed logins for one user name in 5 minutes, counted across replicas, "
        "before attempts from addresses it has not logged in from lately get 429 (0: no limit)",
    )
    oauth_username_claim: str | None = Field(
        None,
        description="Claim of JWT bearer tokens that names the user, sent to the upstream as "
        "the authorization identity, which it checks against the token (Dovecot 2.3 needs "
        "one); unset: tokens go without one (RFC 7628)",
    )
    max_size_request: int = Field(
        10_000_000, ge=1_000, description="Largest API request body, in octets (maxSizeRequest)"
    )
    max_concurrent_requests: int = Field(
        8, ge=1, description="API requests one user may have in flight (maxConcurrentRequests)"
    )
    max_calls_in_request: int = Field(
        32, ge=1, description="Method calls in one API request (maxCallsInRequest)"
    )
    max_size_response: int = Field(
        50_000_000,
        ge=100_000,
        description="Octets of method responses one API request may get; past it, calls that "
        "only read answer requestTooLarge",
    )
    max_objects_in_get: int = Field(500, ge=1, description="Ids in one /get call (maxObjectsInGet)")
    max_objects_in_set: int = Field(
        500, ge=1, description="Creates, updates and destroys in one /set call (maxObjectsInSet)"
    )
    max_size_upload: int = Field(
        50_000_000, ge=1, description="Largest blob upload, in octets (maxSizeUpload)"
    )
    max_concurrent_upload: int = Field(
        4, ge=1, description="Uploads one user may have in flight (maxConcurrentUpload)"
    )
    max_mailboxes_per_email: int = Field(
        32, ge=1, description="Mailboxes one Email may be in (maxMailboxesPerEmail)"
    )
    max_recipients: int = Field(
        100,
        ge=1,
        le=1000,
        description="Recipients of one EmailSubmission (its envelope's rcptTo); past it, "
        "tooManyRecipients (RFC 8621 7.5). At most 1000, the SMTP client's own bound",
    )
    max_size_attachments_per_email: int = Field(
        50_000_000,
        ge=1,
        description="Octets of attachments one created Email may carry "
        "(maxSizeAttachmentsPerEmail)",
    )
    max_size_blobs_per_request: int = Field(
        100_000_000,
        ge=1_000_000,
        description="Octets of blobs one API request may read whole (attachments of created "
        "Emails, Email/import, Email/parse, parts of blobs); past it, tooLarge or notParsable",
    )
    upload_ttl_seconds: int = Field(
        7200, ge=3600, description="Seconds an unused upload is kept (RFC 8620 6: at least an hour)"
    )
    submission_retention_seconds: int = Field(
        7 * 24 * 3600,
        ge=1,
        description="Seconds an EmailSubmission is kept after it was sent or canceled (RFC "
        "8621 7); then it is destroyed and /changes reports it so. Pending ones are kept",
    )
    upload_quota: int | None = Field(
        None,
        ge=1,
        description="Octets of uploads one account may keep in Redis, each upload counting "
        f"{UPLOAD_OVERHEAD} more for its keys; the oldest are deleted to make room (RFC 8620 "
        "6). At least GATEWAY_MAX_SIZE_UPLOAD plus that, and "
        "GATEWAY_MAX_SIZE_ATTACHMENTS_PER_EMAIL; unset: twice the larger of the two, plus "
        f"{UPLOAD_OVERHEAD}",
    )
    push_max_connections: int = Field(
        20_000,
        ge=1,
        description="Push connections (EventSource and WebSocket push) one replica holds; "
        "past it a new one is refused with 429 (limit maxPushConnections)",
    )
    push_max_per_account: int = Field(
        20,
        ge=1,
        description="Push connections one account may hold on one replica; past it a new one "
        "is refused with 429 (limit maxPushConnections)",
    )
    # Push subscriptions (issue 17, part subs): PushSubscription/get and /set, RFC 8620 7.2.
    push_subscription_seconds: int = Field(
        7 * 24 * 3600,
        ge=48 * 3600,
        description="Longest lifetime of a PushSubscription: a later or missing expires is set "
        "to this many seconds from now (RFC 8620 7.2: at least 48 hours, SHOULD be 7 days); "
        "clients extend it by updating expires",
    )
    push_subscriptions_per_account: int = Field(
        20,
        ge=1,
        le=1000,
        description="PushSubscriptions one account may hold; creating more is overQuota",
    )
    ready_cache_seconds: float = Field(
        2.0,
        ge=0,
        description="Seconds a /readyz result is reused, so probes never hammer Redis or the "
        "upstream (0: every probe checks; concurrent probes always share one check)",
    )
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Worker processes serving the API port together, each with its own event "
        "loop, upstream pool and metrics port (GATEWAY_METRICS_PORT + its index); about one per "
        "core the replica may use. Upstream connections per user and per replica multiply by "
        "it",
    )
    shutdown_timeout_seconds: int = Field(
        20,
        ge=1,
        description="Seconds in-flight requests get to finish after SIGTERM before they are "
        "cut; keep it below the pod's termination grace period",
    )
    http_head_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="Seconds a client gets to send a request's head (request line and header "
        "fields), counted from its first octet or from the connection's start; past it the "
        "connection is closed (408)",
    )
    http_body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds a client gets to send a request's body, plus one second per KiB "
        "received (a body slower than 1 KiB/s on average is cut; 408)",
    )
    # RFC 8620 7.3: a server MUST NOT have a minimum ping interval above 30 nor a maximum
    # below 300.
    push_ping_min_seconds: int = Field(
        10,
        ge=1,
        le=30,
        description="Shortest ping interval an EventSource client gets (a smaller non-zero "
        "ping is raised to it; RFC 8620 7.3 allows at most 30)",
    )
    push_ping_max_seconds: int = Field(
        300,
        ge=300,
        description="Longest ping interval an EventSource client gets (a larger ping is "
        "lowered to it; RFC 8620 7.3 wants at least 300)",
    )
    push_allowed_origins: str = Field(
        "",
        description="Web origins (scheme://host[:port], separated by commas) whose pages may "
        "open a WebSocket or EventSource with Basic credentials, besides the gateway's own "
        "(GATEWAY_PUBLIC_URL's); a browser attaches cached Basic credentials to any site's "
        "request, so other origins get 403 unless they send a Bearer or push token",
    )
    push_drain_seconds: float = Field(
        5.0,
        ge=0,
        description="Seconds after SIGTERM that push streams get to end (WebSockets close "
        "with 1001, EventSource responses finish) before in-flight requests get "
        "GATEWAY_SHUTDOWN_TIMEOUT_SECONDS; keep both together below the pod's grace period",
    )
    push_token_seconds: int = Field(
        120,
        ge=10,
        le=3600,
        description="Seconds a push token (POST /jmap/push/token) may be used to open an "
        "EventSource or WebSocket from a browser, passed as the access_token query parameter",
    )
    push_token_stream_seconds: int = Field(
        3600,
        ge=60,
        description="Seconds a push stream opened with a token lives; then it ends (WebSocket "
        "close 1008) and the page mints a new token through the authenticated API",
    )
    push_recheck_seconds: int = Field(
        300,
        ge=10,
        description="Seconds between checks that the credentials of a header-authenticated push "
        "stream still work upstream (through the GATEWAY_AUTH_CACHE_SECONDS cache); refused "
        "ones end the stream",
    )
    push_watch_lease_seconds: float = Field(
        15.0,
        ge=3,
        description="Seconds a replica's lease on watching an account upstream lasts without "
        "renewal (renewed every third of it); when a replica dies, another takes over the "
        "account's push within this plus a third of it. Also how long a dead replica's push "
        "listeners still count",
    )
    push_idle_restart_seconds: float = Field(
        1500.0,
        gt=0,
        le=1740,
        description="Seconds a watcher's IMAP IDLE lasts before it is restarted (RFC 2177: "
        "servers may end an IDLE after 30 minutes of inactivity)",
    )
    push_poll_seconds: float = Field(
        30.0,
        gt=0,
        description="Upstreams without NOTIFY (Cyrus): seconds between a watcher's catch-ups "
        "of folders other than INBOX, which IDLE does not report; INBOX changes arrive at once",
    )
    push_credentials_seconds: float = Field(
        3600.0,
        gt=0,
        description="Seconds a replica keeps, in memory only, the credentials of a push "
        "listener or push token request after their last use, so that a watcher can log in "
        "for browser (token) listeners of the account",
    )
    # -- bgwatch (issue 17): watching subscribed accounts without the user's password ------
    imap_master_user: str | None = Field(
        None,
        description="An IMAP master user (Dovecot master passdb) or admin (Cyrus) that may log "
        "in as any user: with it the gateway watches the mailboxes of users with push "
        "subscriptions while none of their clients is connected; unset: those users are "
        "pushed only the changes made through the gateway",
    )
    imap_master_password: SecretStr | None = Field(
        None, description="Password of GATEWAY_IMAP_MASTER_USER"
    )
    imap_master_login: str = Field(
        "authzid",
        description="How GATEWAY_IMAP_MASTER_USER logs in as a user: authzid (AUTHENTICATE "
        "PLAIN with the user as authorization identity, RFC 4616: Dovecot master users, Cyrus "
        "admins) or separator:<c> (LOGIN user<c>master, Dovecot's "
        "auth_master_user_separator)",
    )
    # --- Outbound Web Push (part webpush, issue 17): where pushes may go, and VAPID. ---
    webpush_allow_http: bool = Field(
        False,
        description="Let PushSubscription URLs use plain http (for tests; push services use "
        "https, and http exposes the push and the VAPID token to the network)",
    )
    webpush_allowed_destinations: str = Field(
        "",
        description="CIDRs, addresses and host names (separated by commas) that push URLs may "
        "reach although they are not public, e.g. an internal push relay; every other "
        "loopback, private, link-local, shared, reserved or multicast destination is refused",
    )
    webpush_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=60,
        description="Seconds a push request may take to connect, and again to send and get its "
        "response; past it the push is retried later",
    )
    webpush_vapid_private_key: SecretStr | None = Field(
        None,
        description="VAPID private key (RFC 8292) signing every push: a PEM P-256 key or its "
        "base64url 32-octet private scalar (python -m gateway vapid-keys makes one); its "
        "public key is the Session's applicationServerKey (RFC 9749). Unset: pushes go without "
        "VAPID and push services that require it refuse them",
    )
    webpush_vapid_subject: str | None = Field(
        None,
        description="Contact push services may use about this gateway's pushes (RFC 8292 2.1): "
        "a mailto: or https: URI; required with GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY",
    )

    @field_validator("webpush_allowed_destinations")
    @classmethod
    def _check_webpush_allowed(cls, value: str) -> str:
        from gateway.webpush.destinations import parse_allowed

        parse_allowed(value)
        return value

    @field_validator("webpush_vapid_private_key")
    @classmethod
    def _check_vapid_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from gateway.webpush.vapid import load_private_key

            load_private_key(value.get_secret_value())
        return value

    @field_validator("webpush_vapid_subject")
    @classmethod
    def _check_vapid_subject(cls, value: str | None) -> str | None:
        if value is not None:
            from gateway.webpush.vapid import check_subject

            check_subject(value)
        return value

    @model_validator(mode="after")
    def _check_vapid_pair(self) -> Settings:
        if (self.webpush_vapid_private_key is None) != (self.webpush_vapid_subject is None):
            raise ValueError(
                "GATEWAY_WEBPUSH_VAPID_PRIVATE_KEY and GATEWAY_WEBPUSH_VAPID_SUBJECT go together"
            )
        return self

    # --- end of part webpush ---
    # -- push subscriptions' deliveries (part "deliver" of issue 17) --
    webpush_min_interval_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="Seconds at least between two pushes to one push subscription (RFC 8620 "
        "7.2); changes meanwhile are coalesced into the next push",
    )
    webpush_ttl_seconds: int = Field(
        86400,
        ge=0,
        le=2419200,
        description="TTL header of pushes (RFC 8030 5.2): seconds a push service keeps a push "
        "for a device that is offline; a newer StateChange replaces an undelivered one",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning or error")

    @field_validator("imap_url")
    @classmethod
    def _check_imap_url(cls, value: str) -> str:
        parse_upstream_url(value, "imap")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp_url(cls, value: str | None) -> str | None:
        if value:
            parse_upstream_url(value, "smtp")
        return value or None

    @field_validator("smtp_auth")
    @classmethod
    def _check_smtp_auth(cls, value: str) -> str:
        if value.strip().lower() not in SMTP_AUTH_MODES:
            raise ValueError("must be user or none")
        return value.strip().lower()

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        # BadRedisUrl is a ValueError naming the problem.
        if is_sentinel_url(value):
            parse_sentinel_url(value)
        elif is_cluster_url(value):
            parse_cluster_url(value)
        elif split_url(value).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(
                "must start with redis://, rediss://, unix://, redis+sentinel://, "
                "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = split_url(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http:// or https:// URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("tls_ca_file")
    @classmethod
    def _check_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    @field_validator("username_format")
    @classmethod
    def _check_username_format(cls, value: str) -> str:
        UsernameFormat(value)
        return value

    @field_validator("mail_domain")
    @classmethod
    def _check_mail_domain(cls, value: str | None) -> str | None:
        if not value:
            return None
        return check_domain(value)

    @field_validator("identity_addresses")
    @classmethod
    def _check_identity_addresses(cls, value: str) -> str:
        SenderPolicy.parse(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            ProxyPolicy.parse(value, "X-Forwarded-For")
        except ValueError:
            raise ValueError("must be IP addresses or CIDR networks, separated by commas") from None
        return value

    @field_validator("forwarded_header")
    @classmethod
    def _check_forwarded_header(cls, value: str) -> str:
        for name in FORWARDED_HEADERS:
            if value.strip().lower() == name.lower():
                return name
        raise ValueError("must be X-Forwarded-For or Forwarded")

    @field_validator("push_allowed_origins")
    @classmethod
    def _check_push_allowed_origins(cls, value: str) -> str:
        for item in (item.strip() for item in value.split(",")):
            if item and not _is_origin(item):
                raise ValueError(f"{item!r} is not an origin (scheme://host[:port])")
        return value

    @field_validator("imap_master_login")
    @classmethod
    def _check_imap_master_login(cls, value: str) -> str:
        master_login_separator(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("must be debug, info, warning or error")
        return value.lower()

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.public_url is None and self.host in ("0.0.0.0", "::", ""):  # noqa: S104
            raise ValueError(
                "GATEWAY_PUBLIC_URL is required when GATEWAY_HOST listens on every address: "
                "clients cannot reach the Session's URLs at a wildcard address"
            )
        if self.redis_sentinel_password is not None and not is_sentinel_url(self.redis_url):
            raise ValueError(
                "GATEWAY_REDIS_SENTINEL_PASSWORD applies only to a redis+sentinel:// or "
                "rediss+sentinel:// GATEWAY_REDIS_URL"
            )
        if self.metrics_port == self.port:
            raise ValueError("GATEWAY_METRICS_PORT must differ from GATEWAY_PORT")
        if self.metrics_port and self.metrics_port < self.port < self.metrics_port + self.workers:
            raise ValueError(
                "GATEWAY_PORT must not be one of the workers' metrics ports "
                "(GATEWAY_METRICS_PORT to GATEWAY_METRICS_PORT + GATEWAY_WORKERS - 1)"
            )
        if (self.smtp_service_username is None) != (self.smtp_service_password is None):
            raise ValueError(
                "GATEWAY_SMTP_SERVICE_USERNAME and GATEWAY_SMTP_SERVICE_PASSWORD go together"
            )
        if (self.imap_master_user is None) != (self.imap_master_password is None):
            raise ValueError(
                "GATEWAY_IMAP_MASTER_USER and GATEWAY_IMAP_MASTER_PASSWORD go together"
            )
        if self.pool_max_per_user > self.pool_max_total:
            raise ValueError("GATEWAY_POOL_MAX_PER_USER must not exceed GATEWAY_POOL_MAX_TOTAL")
        # RFC 8620 6: the quota SHOULD hold the most one object can reference; an upload of the
        # largest size must fit whatever else there is.
        if self.upload_quota is not None and self.upload_quota < max(
            self.max_size_upload + UPLOAD_OVERHEAD, self.max_size_attachments_per_email
        ):
            raise ValueError(
                f"GATEWAY_UPLOAD_QUOTA must be at least GATEWAY_MAX_SIZE_UPLOAD plus "
                f"{UPLOAD_OVERHEAD} and at least GATEWAY_MAX_SIZE_ATTACHMENTS_PER_EMAIL"
            )
        return self

    @property
    def proxy_policy(self) -> ProxyPolicy:
        return ProxyPolicy.parse(self.trusted_proxies or "", self.forwarded_header)

    @property
    def imap(self) -> UpstreamUrl:
        return parse_upstream_url(self.imap_url, "imap")

    @property
    def smtp(self) -> UpstreamUrl | None:
        return parse_upstream_url(self.smtp_url, "smtp") if self.smtp_url else None

    @property
    def upload_quota_octets(self) -> int:
        """GATEWAY_UPLOAD_QUOTA, or its default."""
        if self.upload_quota is not None:
            return self.upload_quota
        return 2 * max(self.max_size_upload, self.max_size_attachments_per_email) + UPLOAD_OVERHEAD

    @property
    def base_url(self) -> str:
        """The URL the Session's URLs start with."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _is_origin(text: str) -> bool:
    """Whether ``text`` is a web origin as a browser's Origin header names one (RFC 6454)."""
    try:
        parts = split_url(text)
        parts.port  # noqa: B018 (raises ValueError for a port that is not one)
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username)
    )


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, let explicit ``overrides`` (CLI flags) win, or raise ConfigError."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_first_problem(exc)) from None


def _first_problem(exc: ValidationError) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    location = error["loc"][0] if error["loc"] else None
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "is required but not set"
    if location is None:
        return message
    return f"{env_name(str(location))}: {message}"
