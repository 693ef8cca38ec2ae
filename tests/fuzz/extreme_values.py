"""Extreme values for fuzzing the served spec (loaded through SCHEMATHESIS_HOOKS).

Every `date-time` the spec takes is drawn, half the time, from the edges: the widest offsets
RFC 3339 allows at both ends of the calendar (whose UTC value lies past what the server's time
type holds), the first and last instants Beckon accepts and the ones just past them, more
fraction digits than PostgreSQL keeps; the other half from any instant in any offset.
Hypothesis already draws strings from every Unicode plane and integers at their limits.
"""

from datetime import datetime, timedelta, timezone

import schemathesis
from hypothesis import strategies as st

EDGES = [
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T23:59:59.999999999Z",
    "0000-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "1969-12-31T23:59:59.999999Z",
    "1970-01-01T00:00:00Z",
    "8999-12-31T23:59:59.999999Z",
    "9000-01-01T00:00:00Z",
    "9000-01-01T00:00:00.000001Z",
    "2262-04-11T23:47:16.854775807Z",
    "2026-12-01T10:00:00.123456789+14:00",
    "2026-12-01T10:00:00-12:00",
]

offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
anywhen = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    offsets,
)

schemathesis.openapi.format("date-time", st.one_of(st.sampled_from(EDGES), anywhen))
