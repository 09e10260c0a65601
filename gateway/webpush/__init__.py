"""Outbound Web Push (RFC 8030, 8291, 8292): where pushes may go, how they are encrypted,
signed and sent. Knows nothing of JMAP, IMAP or Redis: the delivery worker in push/ uses it."""
