"""A mail's wire bytes, written directly: headers as given (RFC 2047 where not ASCII), text
parts in quoted-printable UTF-8 (7-bit safe), CRLF line endings. The ``email`` package does
the same in about 50x the time (it parses or refolds every header); the tests read the result
back with it. Pure: no I/O."""

from __future__ import annotations

import binascii
import hashlib
from collections.abc import Sequence
from email.header import Header

CRLF = "\r\n"


def _lines(text: str) -> list[str]:
    """Split at CR, LF and CRLF only: ``str.splitlines`` also breaks at U+2028 and other
    separators, which are text in a mail."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def header(name: str, value: str) -> str:
    value = " ".join(_lines(value)).strip()  # a line break cannot start a header
    if value.isascii():
        return f"{name}: {value}{CRLF}"
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}{CRLF}"


def quoted_printable(text: str) -> bytes:
    return binascii.b2a_qp((CRLF.join(_lines(text)) + CRLF).encode(), istext=True)


def _text_part(subtype: str, body: str) -> bytes:
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}'
        f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}"
    ).encode() + quoted_printable(body)


def message(headers: Sequence[tuple[str, str]], text: str, html: str | None) -> bytes:
    """``headers`` in order, then MIME-Version and the body: the text alone, or text and HTML
    as multipart/alternative."""
    head = "".join(header(name, value) for name, value in headers) + f"MIME-Version: 1.0{CRLF}"
    if html is None:
        return head.encode() + _text_part("plain", text)
    # quoted-printable writes "=" as "=3D", so no body line can contain "=_"
    seed = "".join(value for _, value in headers).encode()
    boundary = f"=_kizuna_{hashlib.sha256(seed).hexdigest()[:24]}"
    delimiter = f"{CRLF}--{boundary}{CRLF}".encode()
    return b"".join(
        (
            head.encode(),
            f'Content-Type: multipart/alternative; boundary="{boundary}"{CRLF}{CRLF}'.encode(),
            delimiter[2:],  # the first delimiter may start the body
            _text_part("plain", text),
            delimiter,
            _text_part("html", html),
            f"{CRLF}--{boundary}--{CRLF}".encode(),
        )
    )
