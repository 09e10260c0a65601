"""Per-account state counters, state strings and change logs (RFC 8620 5.2 /changes).

Each data type of an account has a counter, the account's own modseq for that type. Every change
takes the next value, and the change log remembers, per id, the modseq of its creation, of its
last change and of its destruction. A **state string** is ``<epoch>-<modseq>``: the epoch is
written with the account's first counter, so if Redis loses the data a new epoch is made and
states handed out before the loss no longer match: they get ``cannotCalculateChanges``, never
a wrong answer.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from gateway.cache.keys import AccountKeys

EPOCH_CHARS = 10
# Data types with properties reported apart when they alone changed (RFC 8621 2.2 Mailbox
# counts). Only these keep the log of major changes, which costs a sorted-set entry per id.
MINOR_TYPES = frozenset({"Mailbox"})

# KEYS: meta, state, changed, born, dead, full, lapse-from, lapse-to. ARGV: data type, epoch
# candidate, "1" if the type has minor properties (only then is the full log kept), then
# (kind, id) pairs; kind is
# c(reated), u(pdated), d(estroyed) or p (updated, only properties the type calls minor:
# Mailbox counts). One script, so the counter and the log move together even with several
# gateways on one Redis.
_RECORD = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[2])
local modseq = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
for i = 4, #ARGV, 2 do
  local kind, id = ARGV[i], ARGV[i + 1]
  modseq = modseq + 1
  redis.call('ZADD', KEYS[3], modseq, id)
  if kind ~= 'p' and ARGV[3] == '1' then
    redis.call('ZADD', KEYS[6], modseq, id)
  end
  if kind == 'c' then
    -- born keeps the first creation; a revival remembers the lapse it ends (dead -> now).
    redis.call('ZADD', KEYS[4], 'NX', modseq, id)
    local dead = redis.call('ZSCORE', KEYS[5], id)
    if dead then
      redis.call('ZREM', KEYS[5], id)
      redis.call('ZADD', KEYS[7], dead, id)
      redis.call('ZADD', KEYS[8], modseq, id)
    end
  elseif kind == 'd' then
    redis.call('ZADD', KEYS[5], modseq, id)
  end
end
redis.call('HSET', KEYS[2], ARGV[1], modseq)
return {redis.call('HGET', KEYS[1], 'epoch'), modseq}
"""


class CannotCalculateChanges(Exception):
    """The state is unknown, from another epoch, or older than the retained log."""


@dataclass(frozen=True)
class Changes:
    """What changed between ``old_state`` and ``new_state`` (RFC 8620 5.2)."""

    old_state: str
    new_state: str
    has_more_changes: bool
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    # True when every updated id changed only in minor properties (see AccountState.record).
    only_minor_updates: bool = False


def floor_field(data_type: str) -> str:
    """The meta field naming the modseq below which a type's log was pruned (AccountState.
    forget); states before it cannot be calculated from."""
    return f"floor:{data_type}"


def format_state(epoch: str, modseq: int) -> str:
    return f"{epoch}-{modseq}"


def parse_state(state: str) -> tuple[str, int]:
    """Split a state string; anything this server did not issue cannot be calculated from.

    Only the digits format_state writes count: ASCII (``int`` also reads "١٢٣"), no sign,
    no leading zero, at most 19 of them.
    """
    epoch, sep, modseq = state.rpartition("-")
    if not sep or not epoch or not _MODSEQ.fullmatch(modseq):
        raise CannotCalculateChanges(f"{state!r} is not a state this server issued")
    return epoch, int(modseq)


_MODSEQ = re.compile(r"0|[1-9][0-9]{0,18}")


class AccountState:
    """State strings and change logs of one account."""

    def __init__(self, client: Redis | RedisCluster, account_id: str) -> None:
        self._client = client
        self._record = client.register_script(_RECORD)
        self.keys = AccountKeys(account_id)

    async def epoch(self) -> str:
        """The account's epoch, made now if the account is new (or its data was lost)."""
        await self._client.hsetnx(self.keys.meta, "epoch", secrets.token_hex(EPOCH_CHARS // 2))
        value = await self._client.hget(self.keys.meta, "epoch")
        return _text(value)

    async def state(self, data_type: str) -> str:
        epoch = await self.epoch()
        modseq = await self._client.hget(self.keys.state, data_type)
        return format_state(epoch, int(modseq or 0))

    async def states(self, data_types: Iterable[str]) -> dict[str, str]:
        """The state string of each of ``data_types``, as ``state`` gives them one by one
        (what Foo/get answers), in one HMGET after the epoch."""
        wanted = list(data_types)
        if not wanted:
            return {}
        epoch = await self.epoch()
        modseqs = await self._client.hmget(self.keys.state, wanted)
        return {
            data_type: format_state(epoch, int(modseq or 0))
            for data_type, modseq in zip(wanted, modseqs, strict=True)
        }

    async def record(
        self,
        data_type: str,
        *,
        created: Iterable[str] = (),
        updated: Iterable[str] = (),
        destroyed: Iterable[str] = (),
        minor: Iterable[str] = (),
        pipe: Pipeline | ClusterPipeline | None = None,
    ) -> str | None:
        """Log changes atomically and return the new state string.

        ``minor`` ids were updated only in properties a type reports apart (Mailbox counts,
        RFC 8621 2.2 updatedProperties). Each id takes its own modseq, so a client can be
        brought to any intermediate state when it asks for fewer changes than there are.
        With ``pipe``, the script is queued in that transaction and None is returned: the
        gateway's writers queue it so through gateway.cache.journal.Journal, which tells the
        process what committed (where push publishes).
        """
        pairs: list[str] = []
        for kind, ids in (("c", created), ("u", updated), ("d", destroyed), ("p", minor)):
            for item in ids:
                pairs += [kind, item]
        k = self.keys
        keys = [
            k.meta,
            k.state,
            k.changed(data_type),
            k.born(data_type),
            k.dead(data_type),
            k.full(data_type),
            k.lapse_from(data_type),
            k.lapse_to(data_type),
        ]
        track_full = "1" if data_type in MINOR_TYPES else "0"
        args = [data_type, secrets.token_hex(EPOCH_CHARS // 2), track_full, *pairs]
        if isinstance(pipe, ClusterPipeline):
            # redis-py queues a script in a cluster pipeline as a bare EVALSHA without loading
            # it first; on a node that lacks it, NOSCRIPT fails that command alone inside EXEC
            # while the rest of the transaction commits. EVAL carries the text, so it cannot.
            pipe.eval(_RECORD, len(keys), *keys, *args)
            return None
        if pipe is not None:
            # redis-py loads the script (SCRIPT EXISTS / LOAD) before a pipeline's MULTI.
            await self._record(keys=keys, args=args, client=pipe)
            return None
        epoch, modseq = await self._record(keys=keys, args=args)
        return format_state(_text(epoch), int(modseq))

    async def changes(self, data_type: str, since: str, max_changes: int | None) -> Changes:
        """Ids created, updated and destroyed since the state ``since``.

        With ``max_changes``, stop after that many ids at their modseq, which is a state the
        client can continue from.
        """
        epoch, since_modseq = parse_state(since)
        current = await self.state(data_type)
        current_epoch, current_modseq = parse_state(current)
        if epoch != current_epoch or since_modseq > current_modseq:
            raise CannotCalculateChanges(f"{since!r} is not a state of this account")
        floor = await self._client.hget(self.keys.meta, floor_field(data_type))
        if floor is not None and since_modseq < int(floor):
            raise CannotCalculateChanges(f"{since!r} is older than the log kept")
        k = self.keys
        count = None if max_changes is None else max_changes + 1
        rows: Sequence[Any] = await self._client.zrange(
            k.changed(data_type),
            f"({since_modseq}",
            "+inf",
            byscore=True,
            withscores=True,
            offset=0 if count else None,
            num=count,
        )
        pairs = [(_text(member), int(score)) for member, score in rows]
        new_modseq = current_modseq
        early: list[str] = []
        has_more = max_changes is not None and len(pairs) > max_changes
        if has_more and max_changes is not None:
            pairs, new_modseq, early = await self._page(
                data_type, since_modseq, pairs[:max_changes], max_changes
            )
        ids = [item for item, _ in pairs]
        born, dead, full, lapse_from, lapse_to = await self._history(data_type, ids)
        created, updated, destroyed = [], [], []
        major = False
        history = zip(ids, born, dead, full, lapse_from, lapse_to, strict=True)
        for item, born_at, dead_at, full_at, lapsed_at, back_at in history:
            # New: it did not exist at ``since`` (born later, or in its last lapse then).
            in_lapse = lapsed_at is not None and lapsed_at <= since_modseq < back_at
            new = (born_at is not None and born_at > since_modseq) or in_lapse
            if dead_at is not None:
                if not new:
                    destroyed.append(item)
            elif new:
                created.append(item)
            else:
                updated.append(item)
                major = major or (full_at is not None and full_at > since_modseq)
        return Changes(
            since,
            format_state(epoch, new_modseq),
            has_more,
            [*created, *early],
            updated,
            destroyed,
            only_minor_updates=not major,
        )

    def forget(
        self, pipe: Pipeline | ClusterPipeline, data_type: str, dead: Mapping[str, int]
    ) -> None:
        """Queue in ``pipe``'s transaction: drop the log entries of ids destroyed at these
        modseqs, so a type whose ids come and go (EmailSubmission) keeps a bounded log.

        A client at a state before the last of those destructions could miss one of them,
        so such states get CannotCalculateChanges from then on (RFC 8620 5.2 allows it;
        the client fetches afresh). The caller passes the oldest destroyed ids, so the
        floor only rises, and serialises its calls (its own transactions' WATCH).
        """
        if not dead:
            return
        k = self.keys
        ids = list(dead)
        for key in (k.changed, k.born, k.dead, k.full, k.lapse_from, k.lapse_to):
            pipe.zrem(key(data_type), *ids)
        pipe.hset(k.meta, floor_field(data_type), max(dead.values()))

    async def _page(
        self, data_type: str, since: int, rows: list[tuple[str, int]], max_changes: int
    ) -> tuple[list[tuple[str, int]], int, list[str]]:
        """Where to cut a page of at most ``max_changes`` ids, and who else belongs in it.

        An id created inside the page but changed again after the cut has its last change
        beyond the page, yet at the page's state it exists: it is reported as created here
        (RFC 8620 5.2), or a client holding only earlier pages would never learn of it. The
        cut is the latest modseq at which the rows plus those ids still fit; it always exists,
        because every modseq is one event.
        """
        cut = rows[-1][1]
        born_rows: Sequence[Any] = await self._client.zrange(
            self.keys.born(data_type), f"({since}", cut, byscore=True, withscores=True
        )
        listed = {item for item, _ in rows}
        late = [(_text(m), int(b)) for m, b in born_rows if _text(m) not in listed]
        late_last: dict[str, float | None] = {}
        if late:
            last = await self._client.zmscore(self.keys.changed(data_type), [i for i, _ in late])
            late_last = dict(zip((i for i, _ in late), last, strict=True))
        for modseq in sorted({m for _, m in rows} | {b for _, b in late}, reverse=True):
            kept = [(item, m) for item, m in rows if m <= modseq]
            early = [i for i, b in late if b <= modseq and (late_last[i] or 0) > modseq]
            if len(kept) + len(early) <= max_changes:
                return kept, modseq, early
        raise AssertionError("a page of one event always fits")

    async def _history(self, data_type: str, ids: list[str]) -> tuple[list[Any], ...]:
        """Per id: modseq of its first creation, of its destruction, of its last major change,
        and the start and end of its last lapse (destroyed, then created again), or None."""
        k = self.keys
        kinds = (k.born, k.dead, k.full, k.lapse_from, k.lapse_to)
        if not ids:
            return tuple([] for _ in kinds)
        async with self._client.pipeline(transaction=False) as pipe:
            for key in kinds:
                pipe.zmscore(key(data_type), ids)
            return tuple(await pipe.execute())


def _text(value: bytes | str | None) -> str:
    if value is None:
        raise RuntimeError("Redis lost a value written in the same script")
    return value.decode() if isinstance(value, bytes) else value
