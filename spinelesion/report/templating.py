"""The Jinja2 templates of the HTML pages (``report.html``, ``evaluation.html``).

Templates live in ``spinelesion/report/templates`` and ship with the package. Autoescaping is on, so
every value a template prints is HTML-escaped unless the template itself holds the markup, and a
variable the template names but the caller did not pass raises (``StrictUndefined``) instead of
printing nothing. Python prepares the values (formatted numbers, words, order, links) as plain
dicts, lists and strings; the templates hold the markup. Jinja2 is imported on first render.
"""

from __future__ import annotations

from functools import lru_cache

#: Package and folder the templates are loaded from.
TEMPLATE_PACKAGE, TEMPLATE_FOLDER = "spinelesion.report", "templates"


def _dash(value):
    """A value for a table cell: an en dash where there is none."""
    from markupsafe import Markup

    return Markup("&ndash;") if value is None else value


@lru_cache(maxsize=1)
def environment():
    """The one Jinja2 environment (autoescaping, strict undefined, templates from the package)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["dash"] = _dash
    return env


def render(name: str, **context) -> str:
    """Template ``name`` (under ``templates/``) rendered with ``context``."""
    return environment().get_template(name).render(**context)


def macro(template: str, name: str):
    """Macro ``name`` of ``template`` as a Python callable returning escaped markup (for tests and parts)."""
    return getattr(environment().get_template(template).module, name)
