"""Pure MIME processing for the Email data type (RFC 8621 4.1.4): no I/O, bytes in, values out."""
