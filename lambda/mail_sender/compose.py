"""One recipient's message from a template bundle: the one path from a decoded recipient to the
bytes SES receives.

The sender sends what `compose` builds; `mailctl send` renders its plan's sample with `render` and
checks every row at the desk with `check_headers`, so what the operator is shown and what the
desk refuses cannot drift from what the sender does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mail_sender.addresses import to_ses
from mail_sender.attachments import FileSpec, parse_specs
from mail_sender.contract import Recipient
from mail_sender.listmail import list_header_lines
from mail_sender.mime import SES_MAX_MESSAGE_BYTES, BundleHeaders, FilePart, RecipientRejected, build_message, recipient_header_lines
from mail_sender.templating import TEMPLATE_PARTS, Rendered, TemplateSet

# What a row's headers depend on: the parts rendered for the desk check.
HEADER_PARTS = ("subject", "unsubscribe_url")


@dataclass(frozen=True)
class LoadedBundle:
    templates: TemplateSet
    headers: BundleHeaders
    configuration_set: str | None
    campaign: str | None = None  # names the list in List-Id and Feedback-ID
    files: tuple[FileSpec, ...] = ()  # attachments and inline images (bundle version 2)


def load_bundle(data: dict[str, Any]) -> LoadedBundle:
    """A decoded bundle (contract.decode_bundle) made ready to render.
    Raises TemplateProblem or ContractError for a bundle that cannot be used at all."""
    return LoadedBundle(
        templates=TemplateSet({part: data.get(part) for part in TEMPLATE_PARTS}),
        headers=BundleHeaders.from_bundle(data),
        configuration_set=data.get("configuration_set") or None,
        campaign=data.get("campaign") or None,
        files=parse_specs(data),
    )


def render_context(recipient: Recipient) -> dict[str, Any]:
    """What a template sees: the row's variables (the address column under its own name) and
    `email`, the address the mail goes to."""
    return {"email": recipient.email, **recipient.vars}


def render(bundle: LoadedBundle, recipient: Recipient, parts: tuple[str, ...] = TEMPLATE_PARTS) -> Rendered:
    return bundle.templates.render(render_context(recipient), parts)


def compose(bundle: LoadedBundle, recipient: Recipient, job_id: str, now: float | None = None,
            files: Sequence[FilePart] = ()) -> tuple[str, bytes]:
    """The address as SES takes it (addresses.to_ses) and the raw message, with `files` (the
    bundle's, fetched for this recipient: mail_sender.attachments.Fetcher). Raises TemplateProblem,
    AddressProblem or RecipientRejected: a permanent failure of this recipient."""
    rendered = render(bundle, recipient)
    # SES takes IDN domains only in Punycode, in the To header and the Destination alike.
    address = to_ses(recipient.email.strip())
    raw = build_message(
        headers=bundle.headers,
        to=address,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        unsubscribe_url=rendered.unsubscribe_url,
        now=now,
        list_headers=list_header_lines(bundle.campaign, job_id, bundle.headers.domain,
                                       {name.lower() for name, _ in bundle.headers.extra}),
        files=files,
    )
    if len(raw) > SES_MAX_MESSAGE_BYTES:
        raise RecipientRejected(f"the message is {len(raw) / 1048576:.1f} MiB, over SES's 40 MB limit")
    return address, raw


def check_headers(templates: TemplateSet, recipient: Recipient) -> None:
    """What `compose` would refuse in this recipient's headers (To, Subject, List-Unsubscribe),
    without rendering or encoding the bodies: the desk check runs it for the rows that need it
    (see mime.may_refuse). Raises TemplateProblem, AddressProblem or RecipientRejected."""
    rendered = templates.render(render_context(recipient), HEADER_PARTS)
    recipient_header_lines(to=to_ses(recipient.email.strip()), subject=rendered.subject, unsubscribe_url=rendered.unsubscribe_url)
