"""The small HTML pages a client or staff member sees after clicking an email link."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em;
line-height:1.5}}button{{font-size:1.2em;padding:.6em 1.4em}}</style></head>
<body><h1>{title}</h1><p>{text}</p>{extra}</body></html>
"""


def page(title: str, text: str, status_code: int = 200, extra: str = "") -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=escape(title), text=escape(text), extra=extra),
        status_code=status_code,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def confirm_page(title: str, text: str, button: str, action_url: str) -> HTMLResponse:
    form = (f'<form method="post" action="{escape(action_url)}">'
            f"<button type=\"submit\">{escape(button)}</button></form>")
    return page(title, text, extra=form)
