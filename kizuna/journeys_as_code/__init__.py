"""Journeys as code: segments, templates and journeys kept in YAML or JSON files and applied to
a workspace through the services' own APIs (issue #9).

- ``document``: the file format, read into items (pure).
- ``normalise``: what of an item is compared (pure).
- ``layout``: the key order items are written in (pure).
- ``plan``: create / update / unchanged and the status changes, with readable diffs (pure).
- ``files``: reading and writing YAML and JSON files.
- ``remote``: the segmenter, notifier and journey APIs over HTTP.
- ``run``: reading the current state, applying a plan, exporting a workspace.
- ``command``: the ``kizuna journeys`` commands.
"""
