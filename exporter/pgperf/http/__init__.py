"""pgperf's HTTP layer, one concern per module:

* ``app``: the WSGI application (routing, the core routes ``/metrics``, ``/probe``,
  ``/healthz``, ``/readyz``), and the cheroot server around it;
* ``auth``: API tokens and their roles, basic authentication (``--web.config.file``);
* ``errors``: the one mapping from exceptions to error answers;
* ``parsing``: request bodies (JSON, size-limited) and the time syntax of every interface;
* ``templating``: the Jinja2 environment (autoescape) of ``templates/``;
* ``webconfig``: the exporter-toolkit web configuration file (TLS, basic authentication).

Features (alerts, reports) add their routes to the application; this package imports
none of them.
"""
