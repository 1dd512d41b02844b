"""Templates and emails without I/O: checks, locale fallback, rendering, MIME and tracking."""

from __future__ import annotations

from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any

import pytest

from kizuna import tracking_tokens
from kizuna_notifier.domain import email, templates
from kizuna_notifier.domain.templates import TemplateBody

SECRET = "s" * 40


def parsed(mail: email.OutgoingMail) -> EmailMessage:
    """What a receiving server reads."""
    assert b"\r\n" in mail.data
    assert b"\n" not in mail.data.replace(b"\r\n", b"")  # CRLF only, as SMTP wants
    message = message_from_bytes(mail.data, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    return message


def template(**parts: Any) -> TemplateBody:
    return TemplateBody.model_validate({"channel": "email", "subject": "Hi", **parts})


def problems(**parts: Any) -> dict[str, str]:
    return {p.field: p.problem for p in templates.check(template(**parts))}


def test_checks_name_the_part_line_and_reason() -> None:
    assert problems(text="Hello {{ customer.first_name }}") == {}
    assert "line 2" in problems(text="ok\n{% if %}")["text"]
    unknown = problems(html="<p>\n{{ coupon }}</p>")["html"]
    assert "line 2" in unknown
    assert "'coupon'" in unknown
    assert "does not render" in problems(text="{{ data.coupon.missing.deeper() }}")["text"]
    assert "html or text" in problems()["html"]
    assert "subject" in {p.field for p in templates.check(TemplateBody(channel="email", text="x"))}
    with_locale = {"locales": {"ja": {"subject": "{{ nope }}"}}, "text": "x"}
    assert "locales.ja.subject" in problems(**with_locale)
    with pytest.raises(ValueError, match="not a locale"):
        template(text="x", locales={"Japanese!": {"subject": "x"}})


def test_locale_falls_back_by_field_then_language_then_default() -> None:
    body = template(
        text="Hello",
        locales={"ja": {"subject": "こんにちは", "text": "やあ"}, "ja-JP": {"text": "どうも"}},
    )
    ja_jp = templates.render(body, templates.SAMPLE_CONTEXT, "ja-JP")
    assert (ja_jp.subject, ja_jp.text) == ("こんにちは", "どうも")
    assert templates.render(body, templates.SAMPLE_CONTEXT, "fr").text == "Hello"


def test_html_is_escaped_text_is_not_and_json_strings_render() -> None:
    body = template(html="<p>{{ customer.first_name }}</p>", text="{{ customer.first_name }}")
    context = {**templates.SAMPLE_CONTEXT, "customer": {"first_name": "<b>Ken</b>"}}
    rendered = templates.render(body, context, None)
    assert rendered.html == "<p>&lt;b&gt;Ken&lt;/b&gt;</p>"
    assert rendered.text == "<b>Ken</b>"
    hook = TemplateBody(
        channel="webhook", body={"who": "{{ customer.id }}", "n": [1, "{{ 1 + 1 }}"]}
    )
    assert templates.render(hook, templates.SAMPLE_CONTEXT, None).body == {
        "who": "kz_sample",
        "n": [1, "2"],
    }


def test_the_sandbox_refuses_reaching_python_internals() -> None:
    hidden = templates.render(
        template(text="[{{ customer.__class__ }}]"), templates.SAMPLE_CONTEXT, None
    )
    assert hidden.text == "[]"  # private attributes read as undefined
    with pytest.raises(templates.RenderFailed):
        templates.render(
            template(text="{{ ''.__class__.__mro__[1].__subclasses__() }}"),
            templates.SAMPLE_CONTEXT,
            None,
        )


def test_email_has_parts_headers_tracking_and_a_stable_message_id() -> None:
    parts = templates.Parts(
        subject="Sale",
        html='<html><body><p>Hi</p><a href="https://shop.example.com/sale">Shop</a>'
        '<a href="https://kizuna.example.com/u/tok">Unsubscribe</a></body></html>',
    )
    tracking = email.Tracking("https://t.example.com", SECRET, "ws", "kz_1")
    envelope = email.Envelope("Shop", "news@shop.example.com", "k@example.com", "shop.example.com")
    mail = email.build(
        parts,
        envelope,
        "send:run:mail:1",
        marketing=True,
        tracking=tracking,
        unsubscribe_url="https://kizuna.example.com/u/tok",
        one_click_url="https://kizuna.example.com/u/tok/one-click",
    )
    again = email.build(
        parts,
        envelope,
        "send:run:mail:1",
        marketing=True,
        tracking=tracking,
        unsubscribe_url=None,
        one_click_url=None,
    )
    assert mail.message_id == again.message_id
    assert mail.message_id.endswith("@shop.example.com>")
    assert (mail.sender, mail.recipient) == ("news@shop.example.com", "k@example.com")
    message = parsed(mail)
    assert message["Message-ID"] == mail.message_id
    assert message["X-Kizuna-Send-Id"] == "send:run:mail:1"
    assert message["List-Unsubscribe"] == "<https://kizuna.example.com/u/tok/one-click>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["From"] == "Shop <news@shop.example.com>"
    assert message["To"] == "k@example.com"
    assert message["Subject"] == "Sale"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Shop (https://shop.example.com/sale)" in text.get_content()
    assert "Unsubscribe: https://kizuna.example.com/u/tok" in text.get_content()
    content = html.get_content()
    assert "https://shop.example.com/sale" not in content  # tracked
    assert 'href="https://kizuna.example.com/u/tok"' in content  # the unsubscribe link is not
    click = content.split('href="https://t.example.com/t/c/')[1].split('"')[0]
    token = tracking_tokens.verify(click, "click", SECRET)
    assert (token.destination, token.message_id) == (
        "https://shop.example.com/sale",
        "send:run:mail:1",
    )
    pixel = content.split("https://t.example.com/t/o/")[1].split(".gif")[0]
    assert tracking_tokens.verify(pixel, "open", SECRET).customer_id == "kz_1"


def test_transactional_mail_has_no_unsubscribe_headers() -> None:
    envelope = email.Envelope("Shop", "a@shop.example.com", "k@example.com", "shop.example.com")
    parts = templates.Parts(subject="Receipt", text="Thanks")
    mail = email.build(
        parts,
        envelope,
        "send:x",
        marketing=False,
        tracking=None,
        unsubscribe_url=None,
        one_click_url=None,
    )
    message = parsed(mail)
    assert message["List-Unsubscribe"] is None
    assert message.get_content_type() == "text/plain"
    assert message.get_content().splitlines() == ["Thanks"]


def test_non_ascii_subject_sender_and_body_survive_the_wire() -> None:
    envelope = email.Envelope(
        "絆ショップ", "news@shop.example.jp", "k@example.com", "shop.example.jp"
    )
    long_line = "お買い物かごに商品が残っています。" * 20
    parts = templates.Parts(
        subject="【10%オフ】\r\nBcc: evil@example.com お忘れ物はありませんか",
        html=f"<html><body><p>{long_line}</p><p>一行\u2028のまま</p></body></html>",
    )
    mail = email.build(
        parts,
        envelope,
        "send:jp",
        marketing=False,
        tracking=None,
        unsubscribe_url=None,
        one_click_url=None,
    )
    assert mail.data.isascii()  # headers RFC 2047-encoded, bodies quoted-printable
    message = parsed(mail)
    assert message["Subject"] == "【10%オフ】 Bcc: evil@example.com お忘れ物はありませんか"
    assert message["Bcc"] is None  # a line break in a subject cannot add a header
    assert message["From"].addresses[0].display_name == "絆ショップ"
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None
    assert text is not None
    assert long_line in html.get_content()
    assert "一行\u2028のまま" in html.get_content()  # U+2028 is text in a mail, not a break
    assert long_line in text.get_content()
