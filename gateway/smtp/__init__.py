"""The upstream SMTP submission client (RFC 6409): connections, EHLO extensions, transactions.

Like :mod:`gateway.imap`, it knows nothing of JMAP or of the gateway's state.
"""
