"""devhost: a small local stand-in for ``func start`` (Azure Functions Core Tools).

Run ``python -m devtools.host --help``. It serves the HTTP functions registered on the
``FunctionApp`` in ``function_app.py``, runs timer functions on their NCRONTAB
schedules and offers the host's admin endpoint to run non-HTTP functions on demand.
It is a development tool only: it does not enforce auth levels and provides no
input/output bindings besides the trigger.
"""
