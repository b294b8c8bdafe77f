"""pgperf's HTTP layer, one concern per module:

* ``app``: the WSGI application (routing, the core routes ``/metrics``, ``/probe``,
  ``/healthz``, ``/readyz``, ``/static/``, security headers), and the cheroot server around it;
* ``auth``: API tokens and their roles, basic authentication (``--web.config.file``);
* ``sessions``: the console's sign-in, session cookie and CSRF tokens;
* ``events``: server-sent events, fanned out to a bounded number of streams;
* ``errors``: the one mapping from exceptions to error answers;
* ``parsing``: request bodies (JSON, size-limited) and the time syntax of every interface;
* ``templating``: the Jinja2 environment (autoescape) of ``templates/``, and the chrome of
  the console's pages;
* ``static``: the pages' stylesheet and scripts (``static/``, with the vendored Chart.js);
* ``webconfig``: the exporter-toolkit web configuration file (TLS, basic authentication).

Features (alerts, reports) and the console add their routes to the application; this
package imports none of them.
"""
