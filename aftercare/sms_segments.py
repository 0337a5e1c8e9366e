"""How many segments an SMS body costs, counted as Twilio counts them.

GSM 03.38 (3GPP TS 23.038): a body written only in the GSM-7 alphabet takes 160 characters
in one segment and 153 per segment once split; a character from the extension table
(``^{}\\[~]|€`` and form feed) takes two. One character outside both makes the whole body
UCS-2: 70 in one segment, 67 per segment once split, counted in UTF-16 code units (an emoji
takes two).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int
    outside_gsm7: str  # the characters that made it UCS-2, in order of appearance


def count_segments(body: str) -> SegmentCount:
    outside = "".join(dict.fromkeys(c for c in body if c not in GSM7_BASIC | GSM7_EXTENSION))
    if outside:
        units = len(body.encode("utf-16-le")) // 2
        single, split = 70, 67
        encoding = "UCS-2"
    else:
        units = sum(2 if c in GSM7_EXTENSION else 1 for c in body)
        single, split = 160, 153
        encoding = "GSM-7"
    segments = 1 if units <= single else ceil(units / split)
    return SegmentCount(encoding, units, segments, outside)
