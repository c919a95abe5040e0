"""The dashboard (``bulletproof-etl serve``) and the static report (``bulletproof-etl report``).

Guarantees: pages are rendered on the server from the state schema and a live health check;
nothing is loaded from elsewhere (no CDN: the CSS is inline, charts are inline SVG); it binds
127.0.0.1 unless a token is given, checks the Host header, and every POST carries a CSRF
token; a review action from a page is the same audited, stale-checked transaction as from
the command line. ``/api/health`` answers what ``health --json`` prints.

Hands on: :func:`.app.create_app` (a Starlette application) and :func:`.report.write_report`
to ``cli/``. Imports the stages below it (base, health, review); needs the ``web`` extra
(Starlette, Jinja2, uvicorn), imported only here.
"""
