"""Container health check: exit 0 when the local server answers 200 on a health path (default /readyz), else 1.

Used by the Dockerfile's HEALTHCHECK (the images ship python, not curl). Standard library only, so it runs in
any image with the package's interpreter. The port comes from SCOTT_PORT, as the server's does.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def check(path: str = "/readyz", port: int | None = None, timeout_s: float = 4.0) -> tuple[bool, str]:
    """(healthy, what was seen) for GET http://127.0.0.1:<port><path>."""
    port = port if port is not None else int(os.environ.get("SCOTT_PORT", "8000"))
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as err:  # 503 while loading, draining or failed
        return False, f"{url}: {err.code} {err.read()[:200].decode(errors='replace')}"
    except OSError as err:  # refused, timed out: the server is not up
        return False, f"{url}: {err}"


def main(argv: list[str]) -> int:
    healthy, seen = check(argv[1] if len(argv) > 1 else "/readyz")
    print(seen)  # docker inspect shows the last output of each check
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
