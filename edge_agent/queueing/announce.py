"""Announcement text for the hall speakers (docs/queue.md, "Announcements").

Template ``请{票号}号到{窗口}号窗口办理业务``; a recall appends ``(重呼)``. For speech,
digits are read one by one (``A012`` → ``A零一二``), as deployed systems do, so the TTS
does not say "十二".
"""

from __future__ import annotations

from typing import Final

DEFAULT_TEMPLATE: Final = "请{ticket}号到{window}号窗口办理业务"
RECALL_SUFFIX: Final = "(重呼)"
_DIGITS: Final = str.maketrans("0123456789", "零一二三四五六七八九")


def announcement(
    ticket: str, window: str, *, recall: bool = False, template: str = DEFAULT_TEMPLATE
) -> str:
    """The display/announcement text, e.g. ``请A012号到3号窗口办理业务``."""
    text = template.format(ticket=ticket, window=window)
    return text + RECALL_SUFFIX if recall else text


def speech_text(text: str) -> str:
    """``text`` with digits spelled one by one and the recall marker spoken."""
    return text.replace(RECALL_SUFFIX, "，重呼").translate(_DIGITS)  # noqa: RUF001 - Chinese comma
