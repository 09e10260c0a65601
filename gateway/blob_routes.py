"""Binary data over HTTP (RFC 8620 6): upload to ``uploadUrl``, download from ``downloadUrl``.

Uploads are streamed into the shared blob store with the size limit checked as octets arrive
and each chunk charged to the account's upload quota (gateway.cache.blobs), and at most
``maxConcurrentUpload`` of one account run at once, across replicas. Downloads serve
blobs this account uploaded, the messages and parts of its emails, streamed from the upstream
(gateway.translators.email.download), and the parts Email/parse reports of the messages those
blobs hold (gateway.translators.email.blob_read).
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gateway.cache.blobs import BlobTooLarge, UploadExpired, UploadQuotaFull
from gateway.cache.limits import TooManyConcurrent
from gateway.env import INDEXING_RETRY_SECONDS, RequestEnv
from gateway.http import JsonResponse, authenticate, services_of
from gateway.jmap.errors import MethodError, RequestError, problem
from gateway.jmap.session import DOWNLOAD_PATH, UPLOAD_PATH
from gateway.problems import HttpProblem, too_many_concurrent
from gateway.translators.email.blob_read import open_blob

# RFC 6838 4.2 type/subtype names, with optional parameters (e.g. charset).
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}"
    r"(?:[ \t]*;[ \t]*[\w!#$&^.+-]+=(?:[\w!#$&^.+-]+|\"[\x20\x21\x23-\x5b\x5d-\x7e]*\"))*",
    re.ASCII,
)
DEFAULT_TYPE = "application/octet-stream"


def add_blob_routes(app: FastAPI) -> None:
    @app.post(UPLOAD_PATH + "{account_id}/", status_code=201)
    async def upload(request: Request, account_id: str) -> JsonResponse:
        principal = await authenticate(request)
        _own_account(principal.account_id, account_id)
        svc = services_of(request)
        media_type = request.headers.get("content-type") or DEFAULT_TYPE
        if not _MEDIA_TYPE.fullmatch(media_type):
            raise HttpProblem(problem(400, "Bad Request", "The Content-Type is not a media type."))
        limit = svc.limits.max_size_upload
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        try:
            async with svc.upload_limiter.admit(account_id):
                blob = await svc.blobs.put(account_id, request.stream(), limit)
        except TooManyConcurrent:
            raise too_many_concurrent(
                "maxConcurrentUpload",
                f"More than {svc.limits.max_concurrent_upload} uploads are in progress.",
            ) from None
        except BlobTooLarge:
            raise _too_large(limit) from None
        except UploadQuotaFull:
            # RFC 8620 6: older uploads were deleted to make room as far as they could be;
            # what is left is taken by this account's uploads still arriving.
            raise RequestError(
                "limit",
                f"The account's uploads in progress fill its upload quota of "
                f"{svc.blobs.quota} octets; retry once they are done.",
                limit="uploadQuota",
                status=413,
            ) from None
        except UploadExpired:
            raise HttpProblem(
                problem(408, "Request Timeout", "The upload took longer than uploads are kept.")
            ) from None
        # RFC 8620 6.1: the response carries accountId, blobId, type and size.
        body = {
            "accountId": account_id,
            "blobId": blob.blob_id,
            "type": media_type,
            "size": blob.size,
        }
        return JsonResponse(body, status_code=201)

    @app.get(DOWNLOAD_PATH + "{account_id}/{blob_id}/{name}")
    async def download(
        request: Request, account_id: str, blob_id: str, name: str, accept: str = DEFAULT_TYPE
    ) -> StreamingResponse:
        principal = await authenticate(request)
        _own_account(principal.account_id, account_id)
        if not _MEDIA_TYPE.fullmatch(accept):
            raise HttpProblem(problem(400, "Bad Request", "accept is not a media type."))
        try:
            download = await open_blob(RequestEnv(services_of(request), principal), blob_id)
        except MethodError as exc:
            if exc.type != "serverUnavailable":
                raise
            # The account's first indexing outlasted the wait: the blob may well exist, so
            # not a 404; RFC 9110 15.6.4: 503 with when to try again.
            raise HttpProblem(
                problem(503, "Service Unavailable", exc.description or "Try again later."),
                {"Retry-After": str(INDEXING_RETRY_SECONDS)},
            ) from None
        if download is None:
            raise HttpProblem(problem(404, "Not Found", "No such blob."))
        headers = {
            # RFC 8620 6.2: the name MUST be the file name if Content-Disposition is set.
            "Content-Disposition": _disposition(name),
            # The octets behind a blob id never change: uploads are content-addressed, an
            # email id names one message's octets, and a part of a blob is cut from those.
            "Cache-Control": "private, immutable, max-age=604800",
            "X-Content-Type-Options": "nosniff",
        }
        if download.size is not None:
            headers["Content-Length"] = str(download.size)
        return StreamingResponse(download.chunks, media_type=accept, headers=headers)


def _own_account(caller: str, requested: str) -> None:
    """Another account's id looks exactly like one that does not exist."""
    if caller != requested:
        raise HttpProblem(problem(404, "Not Found", "No such account."))


def _too_large(limit: int) -> RequestError:
    return RequestError(
        "limit", f"The upload is larger than {limit} octets.", limit="maxSizeUpload", status=413
    )


def _disposition(name: str) -> str:
    """RFC 6266: an ASCII fallback plus the exact UTF-8 name (RFC 8187)."""
    fallback = (
        "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
        or "download"
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
