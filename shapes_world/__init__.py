"""The built-in shapes world, for the data that renders it and the evaluation that reads it back.

``render``: palette, shape outlines (signed distance functions) and the renderer; ``layout``:
quadrants, sizes, jitter, brightness and background. It imports neither ``mjexp`` nor
``evaluation`` (an import-linter contract), so both can import it (docs/architecture.md).
"""
