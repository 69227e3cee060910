"""The studio's business logic, one module per role.

- ``submitting``: what a person asks for (new jobs, retries, cancelling, archiving), with the
  rules every submission obeys.
- ``lifecycle``: the worker's side: sending a job to Kling, following it, and the schedule.
- ``callbacks``: Kling's calls back to the studio.
- ``status``: the one way a job's status and its plain-words sentence change.

Imports go one way only: submitting and callbacks use lifecycle, lifecycle uses the result
and e-mail services (``tasks_app.results``, ``tasks_app.notices``), and everything uses
status. Each module defines the worker tasks that run its own functions, so enqueueing a
task never imports a module above it.
"""
