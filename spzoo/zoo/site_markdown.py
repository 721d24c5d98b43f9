"""The markdown of the model cards (`spzoo.zoo.card.render`) as HTML.

Only what the cards use: `#`/`##` headings, paragraphs, `- ` lists, pipe
tables with a `| --- |` rule, and inline `code`, **bold** and *italics*.
Text is HTML-escaped first, so a card cannot inject markup.
"""

import html
import re

_INLINE = (
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])"), r"<em>\1</em>"),
)
_RULE = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def inline(text: str) -> str:
    """One line of markdown as escaped HTML with code, bold and italics."""
    parts = re.split(r"(`[^`]+`)", html.escape(text, quote=False))
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{part[1:-1]}</code>")  # no emphasis inside code
            continue
        for pattern, replacement in _INLINE[1:]:
            part = pattern.sub(replacement, part)
        out.append(part)
    return "".join(out)


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table(lines: list[str]) -> str:
    head, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    out = ["<table>", "<thead><tr>"]
    out += [f"<th>{inline(cell)}</th>" for cell in head]
    out += ["</tr></thead>", "<tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def to_html(markdown: str, heading_offset: int = 0) -> str:
    """`markdown` (a model card) as an HTML fragment.

    Args:
        markdown: Text in the subset described in the module docstring.
        heading_offset: Added to every heading level (1: `#` becomes `<h2>`).
    """
    blocks: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = min(6, len(heading.group(1)) + heading_offset)
            blocks.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if line.startswith("|") and i + 1 < len(lines) and _RULE.match(lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            blocks.append(_table(lines[i:end]))
            i = end
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            blocks.append("<ul>\n" + "\n".join(items) + "\n</ul>")
            continue
        paragraph = []
        while (
            i < len(lines)
            and lines[i].strip()
            and not re.match(r"^(#{1,6}\s|- |\|)", lines[i])
        ):
            paragraph.append(lines[i].strip())
            i += 1
        blocks.append(f"<p>{inline(' '.join(paragraph))}</p>")
    return "\n".join(blocks)
