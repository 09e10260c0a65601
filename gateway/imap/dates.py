"""RFC 3501 9 date-month names, always English: shared by the command builders (SEARCH
dates, APPEND date-time) and the parser of INTERNALDATE."""

from __future__ import annotations

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
