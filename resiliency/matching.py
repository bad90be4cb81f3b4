"""Which failed outcomes a retry policy retries: Dapr's ``matching`` status-code lists."""

from __future__ import annotations

from dataclasses import dataclass

from resiliency.errors import StatusRangeError
from yamlcheck import show

HTTP_CODES = (100, 599)
GRPC_CODES = (0, 16)

StatusRanges = tuple[tuple[int, int], ...]


def parse_status_ranges(text: object, valid: tuple[int, int]) -> StatusRanges:
    """Parse "500-599,429" into inclusive ranges, each inside ``valid``; "" means no list."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        raise StatusRangeError(f'{show(text)} is not a list of status codes such as "500-599"')
    low_valid, high_valid = valid
    ranges: list[tuple[int, int]] = []
    for raw_entry in text.split(","):
        entry = raw_entry.strip()
        if not entry:
            if text.strip():
                raise StatusRangeError(f"{show(text)} has an empty entry")
            continue
        low_text, dash, high_text = entry.partition("-")
        low_text, high_text = low_text.strip(), high_text.strip()
        if not _digits(low_text) or (dash and not _digits(high_text)):
            raise StatusRangeError(f"{show(entry)} is not a status code or a range such as 500-599")
        low = int(low_text)
        high = int(high_text) if dash else low
        if low > high:
            raise StatusRangeError(f"{show(entry)} starts after it ends")
        if low < low_valid or high > high_valid:
            raise StatusRangeError(f"{show(entry)} is outside {low_valid}-{high_valid}")
        ranges.append((low, high))
    return tuple(ranges)


def _contains(ranges: StatusRanges, code: int) -> bool:
    return any(low <= code <= high for low, high in ranges)


@dataclass(frozen=True)
class StatusMatching:
    """A retry policy's ``matching``: empty lists retry every code of their kind."""

    http: StatusRanges = ()
    grpc: StatusRanges = ()

    def should_retry(self, code: int | None) -> bool:
        """Dapr's filter: ``None`` (transport error, timeout) always; codes by their list."""
        if code is None:
            return True
        if GRPC_CODES[0] <= code <= GRPC_CODES[1]:
            return not self.grpc or _contains(self.grpc, code)
        if HTTP_CODES[0] <= code <= HTTP_CODES[1]:
            return not self.http or _contains(self.http, code)
        return False


def _digits(text: str) -> bool:
    # str.isdigit() also accepts digits such as "²" that int() refuses.
    return text.isascii() and text.isdigit()
