"""The validation report: one section per check, each PASS or FAIL with its figures.

One versioned structure, written as JSON (for tools and the end-to-end test) and as a
self-contained HTML page (for people). A check that does not apply to the deployment (no
cache, no bus, no node to kill) is listed under *not run* with the reason, never as a pass.
"""

from __future__ import annotations

import html
from pathlib import Path

import msgspec

from switchboard.atomic_file import write_atomically

REPORT_SCHEMA_VERSION = 1


class Check(msgspec.Struct, kw_only=True):
    name: str
    #: what the check proves, in one sentence
    claim: str
    passed: bool
    #: the measured figures, as label -> value
    figures: dict[str, str | int | float] = msgspec.field(default_factory=dict)
    #: why it failed (or a note when it passed)
    detail: str = ""


class ValidationReport(msgspec.Struct, kw_only=True):
    schema_version: int = REPORT_SCHEMA_VERSION
    target: str
    profile: str
    budget_ms: float
    calls: int
    started_at: str
    duration_s: float = 0.0
    checks: list[Check] = msgspec.field(default_factory=list)
    #: check name -> why it did not run
    not_run: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    def as_json(self) -> bytes:
        data = msgspec.to_builtins(self)
        data["passed"] = self.passed
        return msgspec.json.format(msgspec.json.encode(data), indent=2)


def load_report(path: Path) -> ValidationReport:
    return msgspec.json.decode(path.read_bytes(), type=ValidationReport)


def _atomic(path: Path, data: bytes) -> None:
    write_atomically(path, data)


def write_report(report: ValidationReport, html_path: Path) -> Path:
    """Write ``PATH`` (HTML) and ``PATH`` with ``.json``; returns the JSON path."""
    json_path = html_path.with_suffix(".json")
    _atomic(json_path, report.as_json())
    _atomic(html_path, render_html(report).encode())
    return json_path


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.4rem}
section{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}
.PASS{color:#116b2b}.FAIL{color:#b00020} table{border-collapse:collapse}
td,th{padding:.15rem .8rem .15rem 0;text-align:left;vertical-align:top} code{font-size:.9em}
"""


def render_html(report: ValidationReport) -> str:
    e = html.escape
    verdict = "PASS" if report.passed else "FAIL"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>switchboard validation: {verdict}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Validation <span class='{verdict}'>{verdict}</span>: {e(report.profile)}</h1>",
        f"<p>Target <code>{e(report.target)}</code>, {report.calls} calls, budget "
        f"{report.budget_ms:g} ms, started {e(report.started_at)}, {report.duration_s:.1f} s.</p>",
        "<table><tr><th>check</th><th>result</th></tr>",
    ]
    for c in report.checks:
        status = "PASS" if c.passed else "FAIL"
        parts.append(f"<tr><td>{e(c.name)}</td><td class='{status}'>{status}</td></tr>")
    parts.append("</table>")
    for c in report.checks:
        status = "PASS" if c.passed else "FAIL"
        rows = "".join(
            f"<tr><td>{e(k)}</td><td>{e(str(v))}</td></tr>" for k, v in c.figures.items()
        )
        parts.append(
            f"<section><h2>{e(c.name)}: <span class='{status}'>{status}</span></h2>"
            f"<p>{e(c.claim)}</p><table>{rows}</table>"
            + (f"<p>{e(c.detail)}</p>" if c.detail else "")
            + "</section>"
        )
    if report.not_run:
        parts.append("<section><h2>Not run</h2><ul>")
        parts += [f"<li>{e(k)}: {e(v)}</li>" for k, v in report.not_run.items()]
        parts.append("</ul></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
