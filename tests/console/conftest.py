from .browser import chromium  # noqa: F401  (the session's browser, for every console test)
