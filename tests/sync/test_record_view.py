"""EmailRecord.view() in one pass gives what its properties give (visible, mailbox_ids,
flags): the index writer compares views to decide what changed."""

from __future__ import annotations

import random

from gateway.cache.emails import EmailRecord

FLAGS = ["\\Seen", "\\seen", "\\Deleted", "\\DELETED", "\\Recent", "\\Flagged", "$Junk", "\\Draft"]


def test_views_as_the_properties_compose_them() -> None:
    rng = random.Random(1616)
    for _ in range(5000):
        copies = {
            f"m{m}": {
                uid: rng.sample(FLAGS, rng.randrange(0, 4)) for uid in range(rng.randrange(0, 3))
            }
            for m in range(rng.randrange(0, 4))
        }
        record = EmailRecord("e1", "t1", 0, 1, copies)
        expected = (sorted(record.mailbox_ids), sorted(record.flags)) if record.visible else None
        assert record.view() == expected, copies
