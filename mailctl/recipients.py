"""Checking recipient rows (read by mailctl.recipient_files), streamed in constant memory whatever the file's size.

Every row is checked: the address (email-validator's rules, no DNS), duplicates (case-insensitive,
the first occurrence is sent, later ones are reported), control characters (none at all in values
that reach a header; only tab and line breaks elsewhere), the template's variables, and the size
of the message it would make.

Checking a million addresses with email-validator alone takes ~30 s here; the fast path below
accepts exactly what email-validator accepts for the plain ASCII addresses that make up nearly
every list (a dot-atom local part) and asks email-validator once per distinct domain. Everything
else goes through email-validator itself. tests/unit/test_recipients.py holds the two paths equal.
"""

from __future__ import annotations

from array import array
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from email_validator import EmailNotValidError, validate_email

from mailctl.errors import ConfigError
from mail_sender.addresses import AddressProblem, to_ses
from mail_sender.compose import HEADER_PARTS, check_headers
from mail_sender.contract import decode_recipient, encode_recipient
from mail_sender.mime import MAX_UNSUBSCRIBE_URL, SES_MAX_MESSAGE_BYTES, RecipientRejected, is_plain_address, may_refuse
from mail_sender.templating import TemplateProblem, TemplateSet

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_FAST_ADDRESS = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@([A-Za-z0-9.-]+)")
_HEADER_BAD = re.compile(r"[\x00-\x1f\x7f]")
_BODY_BAD = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_encode_string = json.encoder.encode_basestring  # the C implementation when available


class RowProblem(ValueError):
    pass


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    """email-validator's verdict on a domain, once per distinct domain; raises RowProblem."""
    try:
        return validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError as exc:
        raise RowProblem(str(exc)) from None


def normalize_address(address: str) -> str:
    """The address as email-validator normalises it; raises RowProblem with its reason."""
    match = _FAST_ADDRESS.fullmatch(address)
    if match and len(match.group(1)) <= 64:
        normalized = f"{match.group(1)}@{_domain(match.group(2))}"
        if len(normalized) <= 254:
            return normalized
    try:
        normalized = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise RowProblem(str(exc)) from None
    try:
        to_ses(normalized)  # what the sender will do: refused here, not at SES
    except AddressProblem as exc:
        raise RowProblem(exc.reason) from None
    return normalized


# --- checks ------------------------------------------------------------------------------------

@dataclass
class Checker:
    templates: TemplateSet
    email_column: str
    source_name: str
    max_message_bytes: int = SES_MAX_MESSAGE_BYTES
    _max_uses: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        self._max_uses = max([1, *self.templates.uses.values()])
        # `email` is always in the sender's render context (compose.render_context): no column needed.
        self._header_vars = tuple(sorted(self.templates.header_variables - {"email"}))
        self._needed = self.templates.variables - {"email"}
        # Rows whose headers could be refused by the sender's MIME code get that very code run on
        # them here (mime.may_refuse says which); with such text in the templates themselves, all do.
        header_sources = [self.templates.sources[part] or "" for part in HEADER_PARTS]
        self._headers_of_every_row = any(may_refuse(source) for source in header_sources)
        self._email_in_headers = "email" in self.templates.header_variables
        # The unsubscribe URL's length limit: a row whose values could make it too long, once
        # percent-encoded (at most 12 characters per character: 4 UTF-8 bytes as %XX), is checked.
        unsubscribe = self.templates.sources["unsubscribe_url"] or ""
        self._url_static = len(unsubscribe)
        self._url_uses = {name: unsubscribe.count(name) for name in self.templates.part_variables.get("unsubscribe_url", ())}
        self._url_indexes: list[tuple[int, int]] = []

    def _url_may_be_too_long(self, lengths: int) -> bool:
        return self._url_static + 12 * lengths > MAX_UNSUBSCRIBE_URL

    def check_columns(self, columns: list[str]) -> None:
        """A CSV's header is checked once: every template variable needs a column."""
        if self.email_column not in columns:
            raise ConfigError(
                f"{self.source_name}:1: no {self.email_column!r} column (columns: {', '.join(columns)})",
                hint="set email_column in the campaign file to the column that holds the addresses",
            )
        missing = sorted(self._needed - set(columns))
        if missing:
            raise ConfigError(
                f"{self.source_name}:1: template variable {missing[0]!r} has no column"
                + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else ""),
                hint="add the column, or remove the variable from the templates",
            )

    def bind_columns(self, columns: list[str]) -> None:
        """Precompute column positions so that CSV rows are checked as lists, without dicts."""
        self.check_columns(columns)
        self._columns = columns
        self._email_index = columns.index(self.email_column)
        self._header_indexes = [columns.index(name) for name in self._header_vars if name in columns]
        self._url_indexes = [(columns.index(name), uses) for name, uses in self._url_uses.items() if name in columns]
        # The sender's render context is {"email": address, **vars}: an "email" column need not travel twice.
        keep = [i for i, name in enumerate(columns) if not (name == "email" and i == self._email_index)]
        self._var_keys = [(i, _encode_string(columns[i])) for i in keep]

    def check_values(self, values: list[str]) -> str:
        """`check` for a CSV row given as its list of values (see `bind_columns`)."""
        address = values[self._email_index].strip()
        if not address:
            raise RowProblem(f"no address in column {self.email_column!r}")
        normalized = normalize_address(address)
        joined = "".join(values)
        if _BODY_BAD.search(joined):
            bad = next(self._columns[i] for i, v in enumerate(values) if _BODY_BAD.search(v))
            raise RowProblem(f"column {bad!r} contains a control character")
        refusable = self._headers_of_every_row
        for index in self._header_indexes:
            value = values[index]
            if _HEADER_BAD.search(value):
                raise RowProblem(f"column {self._columns[index]!r} reaches a mail header and contains a line break or control character")
            refusable = refusable or may_refuse(value)
        if len(joined) * self._max_uses + self.templates.static_size > self.max_message_bytes:
            size = self.templates.estimated_size(dict(zip(self._columns, values)))
            if size > self.max_message_bytes:
                raise RowProblem(f"the message would be about {size / 1048576:.0f} MB, over SES's 40 MB limit")
        if self._url_indexes and not refusable:
            refusable = self._url_may_be_too_long(sum(len(values[i]) * uses for i, uses in self._url_indexes) + len(normalized) * self._url_uses.get("email", 0))
        if refusable or not is_plain_address(normalized) or (self._email_in_headers and may_refuse(normalized)):
            self._check_headers(self.encode_values(normalized, values, 0))
        return normalized

    def _check_headers(self, item: str) -> None:
        """The sender's own header code on this row, decoded as the sender decodes it."""
        try:
            check_headers(self.templates, decode_recipient(item))
        except RecipientRejected as exc:
            raise RowProblem(str(exc)) from None
        except AddressProblem as exc:
            raise RowProblem(exc.reason) from None
        except TemplateProblem as exc:
            raise RowProblem(f"template: {exc}") from None

    def encode_values(self, email: str, values: list[str], line: int) -> str:
        """`encode_item` for a CSV row, assembled from pre-encoded keys: this runs a million times."""
        fields = ",".join([f"{key}:{_encode_string(values[i])}" for i, key in self._var_keys])
        return f'{{"email":{_encode_string(email)},"row":{line},"vars":{{{fields}}}}}'

    def check(self, row: dict[str, Any], check_keys: bool) -> str:
        """The normalised address of a valid row; raises RowProblem with the reason otherwise."""
        address = row.get(self.email_column)
        if not isinstance(address, str) or not address.strip():
            raise RowProblem(f"no address in column {self.email_column!r}")
        if check_keys:
            missing = self._needed - row.keys()
            if missing:
                raise RowProblem(f"missing template variable {sorted(missing)[0]!r}")
        normalized = normalize_address(address.strip())
        strings = [value if isinstance(value, str) else str(value) for value in row.values()]
        if _BODY_BAD.search("".join(strings)):
            bad = next(k for k, v in row.items() if _BODY_BAD.search(v if isinstance(v, str) else str(v)))
            raise RowProblem(f"column {bad!r} contains a control character")
        for name in self._header_vars:
            value = row.get(name)
            if isinstance(value, str) and _HEADER_BAD.search(value):
                raise RowProblem(f"column {name!r} reaches a mail header and contains a line break or control character")
        total = sum(map(len, strings))
        if total * self._max_uses + self.templates.static_size > self.max_message_bytes:
            size = self.templates.estimated_size(row)
            if size > self.max_message_bytes:
                raise RowProblem(f"the message would be about {size / 1048576:.0f} MB, over SES's 40 MB limit")
        url_lengths = sum(len(str(row.get(name, ""))) * uses for name, uses in self._url_uses.items() if name != "email") + len(normalized) * self._url_uses.get("email", 0)
        if self._headers_of_every_row or self._url_may_be_too_long(url_lengths) or not is_plain_address(normalized) or (self._email_in_headers and may_refuse(normalized)) or any(
            row.get(name) is not None and may_refuse(str(row[name])) for name in self._header_vars
        ):
            self._check_headers(encode_item(normalized, row, 0, self.email_column))
        return normalized


def encode_item(email: str, row: dict[str, Any], line: int, email_column: str = "email") -> str:
    """One recipient of the message contract, as JSON text (see mail_sender.contract)."""
    variables = {k: v for k, v in row.items() if k != "email"} if email_column == "email" else row
    return _ENCODER.encode(encode_recipient(email, variables, line))


class SeenHashes:
    """An insert-only set of 64-bit hashes in one flat array: 8-16 bytes per address instead of the
    ~64 a Python set of ints costs, so a million-row file stays well inside its memory budget.
    Open addressing with linear probing; 0 marks an empty slot."""

    def __init__(self, expected: int = 1024):
        size = 1 << max(10, (max(expected, 1) * 2 - 1).bit_length())
        self._table = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def add(self, value: int) -> bool:
        """Add a hash; False if it was already there."""
        value &= 0xFFFF_FFFF_FFFF_FFFF
        value = value or 1
        table, mask = self._table, self._mask
        index = value & mask
        while True:
            slot = table[index]
            if slot == value:
                return False
            if not slot:
                break
            index = (index + 1) & mask
        table[index] = value
        self._count += 1
        if self._count * 2 > mask:
            self._grow()
        return True

    def contains(self, value: int) -> bool:
        value &= 0xFFFF_FFFF_FFFF_FFFF
        value = value or 1
        table, mask = self._table, self._mask
        index = value & mask
        while slot := table[index]:
            if slot == value:
                return True
            index = (index + 1) & mask
        return False

    def _grow(self) -> None:
        old = self._table
        self.__init__(len(old))
        for value in old:
            if value:
                self.add(value)
