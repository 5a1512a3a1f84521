"""mkdocs hook: generate the CLI reference from miq's argparse parser.

``docs/reference/cli.md`` holds the placeholder line ``<!-- miq-cli-reference -->``; on every build
:func:`on_page_markdown` replaces it with one section per ``miq`` subcommand (its help and
description, usage, and a table of every argument with its help and default), built by walking
``miq.cli.build_parser()``. The page therefore cannot drift from the code.
"""

from __future__ import annotations

import argparse
import html
import io
import re
from contextlib import redirect_stdout

PLACEHOLDER = "<!-- miq-cli-reference -->"
PAGE = "reference/cli.md"


def _cell(text: str) -> str:
    """Text for one markdown table cell: one line, pipes and angle brackets escaped."""
    text = " ".join(str(text).split())
    return html.escape(text, quote=False).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code for a table cell (a pipe inside still has to be escaped)."""
    return "`" + str(text).replace("|", "\\|") + "`"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return _code(action.metavar or action.dest)
    metavar = ""
    if action.nargs != 0:
        if action.metavar is not None:
            metavar = (
                action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
            )
        elif action.choices is not None:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        else:
            metavar = action.dest.upper()
        if action.nargs in ("+", "*"):
            metavar += " ..."
    names = ", ".join(action.option_strings)
    return _code(f"{names} {metavar}".strip())


def _default(action: argparse.Action) -> str:
    if not action.option_strings:
        return "required" if action.nargs not in ("?", "*") else ""
    if action.required:
        return "required"
    if action.nargs == 0:  # flags
        return ""
    default = action.default
    if default is None or default is argparse.SUPPRESS:
        return ""
    if isinstance(default, list) and not default:
        return ""
    return _code(default)


def _details(action: argparse.Action) -> str:
    parts = [action.help % vars(action) if action.help and "%(" in action.help else action.help]
    parts = [p for p in parts if p and p is not argparse.SUPPRESS]
    if action.choices is not None and action.option_strings and action.metavar is not None:
        parts.append("choices: " + ", ".join(map(str, action.choices)))  # else in the name
    if isinstance(action, argparse._AppendAction) and "repeatable" not in " ".join(parts):
        parts.append("repeatable")
    return _cell("; ".join(parts)) if parts else ""


def _table(actions: list[argparse.Action]) -> list[str]:
    lines = ["| argument | meaning | default |", "|---|---|---|"]
    for action in actions:
        if isinstance(action, argparse._HelpAction):
            continue
        lines.append(f"| {_names(action)} | {_details(action)} | {_default(action)} |")
    return lines


def _section(name: str, help_text: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `miq {name}`", ""]
    if help_text:
        lines += [_cell(help_text[0].upper() + help_text[1:]) + ".", ""]
    if parser.description:
        lines += [" ".join(parser.description.split()), ""]
    lines += ["```text", _usage(parser), "```", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = group.title or "arguments"
        lines += [f"**{title[0].upper() + title[1:]}**", ""]
        lines += _table(actions) + [""]
    return lines


def cli_reference_markdown() -> str:
    """The whole CLI reference as markdown, from ``miq.cli.build_parser()``."""
    from miq.cli import build_parser

    parser = build_parser()
    sub = _subparsers(parser)
    lines = [
        "```text",
        _usage(parser),
        "```",
        "",
        " ".join((parser.description or "").split()),
        "",
    ]
    top = [a for a in parser._actions if a is not sub and not isinstance(a, argparse._HelpAction)]
    if top:
        lines += _table(top) + [""]
    if sub is None:
        return "\n".join(lines)
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    lines += ["| command | what it does |", "|---|---|"]
    for name in sub.choices:
        anchor = "miq-" + re.sub(r"[^a-z0-9-]", "", name.lower())
        lines.append(f"| [`miq {name}`](#{anchor}) | {_cell(helps.get(name, ''))} |")
    lines.append("")
    for name, subparser in sub.choices.items():
        lines += _section(name, helps.get(name, ""), subparser)
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    if PLACEHOLDER not in markdown:
        raise ValueError(f"{PAGE}: the placeholder line {PLACEHOLDER} is missing")
    with redirect_stdout(io.StringIO()):  # the parser must not print while it is built
        generated = cli_reference_markdown()
    return markdown.replace(PLACEHOLDER, generated)
