"""The core capability (RFC 8620 2): its methods and its limits, built from the settings.

The limits are advertised in the Session and enforced by the request parser and the standard
methods alike (gateway.jmap.capabilities.CoreLimits), so both read the one object built here.
"""

from __future__ import annotations

from gateway.config import Settings
from gateway.jmap.capabilities import CORE, CoreLimits
from gateway.jmap.core_methods import ECHO
from gateway.jmap.query import SUPPORTED_COLLATIONS
from gateway.translators.blob import BLOB_COPY
from gateway.translators.spec import Capability, Spec


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


# RFC 8620 2: accounts need not list core; the dispatcher lets its methods use every account.
SPEC = Spec(
    CORE,
    (ECHO, BLOB_COPY),
    declares=Capability(CORE, session=lambda settings, _: core_limits(settings).to_capability()),
)
