"""Attachments (last phone bill, signed consent): type sniffed, size bounded, kept in the row."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime

import filetype
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer
from sqlmodel import col

from centralino_proto.web import Problem

from .models import Attachment, AttachmentKind, PortRequest, TimelineEntry, TimelineKind

# What a bill or a signed scan is: a PDF or an image. Judged by content, never by name.
ALLOWED = {
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/tiff": ".tif",
    "image/webp": ".webp",
}


def sniff(content: bytes) -> str:
    """The content's real type; 415 when it is not a PDF or an image."""
    if not content:
        raise Problem(422, "Empty file", "the uploaded file is empty")
    guess = filetype.guess(content)
    mime = guess.mime if guess else None
    if mime not in ALLOWED:
        raise Problem(
            415,
            "Unsupported attachment type",
            f"a PDF or an image (PNG, JPEG, TIFF, WebP) is needed, this is {mime or 'unknown'}",
        )
    return mime


def safe_filename(name: str | None, kind: AttachmentKind, mime: str) -> str:
    """A display name without any path, kept to a harmless alphabet."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base.rsplit(".", 1)[0]).strip("._")[:80]
    return f"{stem or kind.value}{ALLOWED[mime]}"


async def add_attachment(
    *,
    session: AsyncSession,
    request: PortRequest,
    kind: AttachmentKind,
    content: bytes,
    filename: str | None,
    actor: str,
    now: datetime,
) -> Attachment:
    """Stores a checked attachment and notes it in the timeline."""
    mime = sniff(content)
    attachment = Attachment(
        request_id=request.id,
        kind=kind,
        filename=safe_filename(filename, kind, mime),
        content_type=mime,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
        uploaded_by=actor,
        uploaded_at=now,
    )
    session.add(attachment)
    session.add(
        TimelineEntry(
            request_id=request.id,
            at=now,
            actor=actor,
            kind=TimelineKind.attachment,
            comment=f"{kind.value}: {attachment.filename}",
            public=True,
        )
    )
    request.updated_at = now
    await session.flush()
    return attachment


async def list_attachments(*, session: AsyncSession, request_id: uuid.UUID) -> list[Attachment]:
    """A request's attachments (metadata only; the content stays in the database)."""
    return list(
        (
            await session.execute(
                select(Attachment)
                .options(defer(Attachment.content))  # type: ignore[arg-type]
                .where(col(Attachment.request_id) == request_id)
                .order_by(col(Attachment.uploaded_at))
            )
        ).scalars()
    )


async def get_attachment(
    *, session: AsyncSession, request_id: uuid.UUID, attachment_id: uuid.UUID
) -> Attachment:
    """One attachment of a request; 404 otherwise."""
    found = (
        await session.execute(
            select(Attachment).where(
                col(Attachment.id) == attachment_id, col(Attachment.request_id) == request_id
            )
        )
    ).scalar_one_or_none()
    if found is None:
        raise Problem(404, "Attachment not found", f"no attachment {attachment_id}")
    return found


async def count_attachments(*, session: AsyncSession, request_id: uuid.UUID) -> int:
    """How many attachments a request holds."""
    found = await session.execute(
        select(func.count()).select_from(Attachment).where(col(Attachment.request_id) == request_id)
    )
    return int(found.scalar_one())


async def remove_attachment(
    *,
    session: AsyncSession,
    request: PortRequest,
    attachment: Attachment,
    actor: str,
    now: datetime,
) -> None:
    """Deletes an attachment and notes it in the timeline."""
    await session.delete(attachment)
    session.add(
        TimelineEntry(
            request_id=request.id,
            at=now,
            actor=actor,
            kind=TimelineKind.attachment,
            comment=f"removed {attachment.kind}: {attachment.filename}",
            public=True,
        )
    )
    request.updated_at = now
    await session.flush()
