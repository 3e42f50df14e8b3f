"""The baseline: h5grove 4.0.0's own tornado handlers in a minimal tornado app."""

from __future__ import annotations

import argparse
import asyncio

import tornado.web
from h5grove.tornado_utils import get_handlers


async def serve(root: str, port: int) -> None:
    """Serve `root` with h5grove's handlers on 127.0.0.1:`port` until killed."""
    app = tornado.web.Application(get_handlers(root))
    app.listen(port, address="127.0.0.1")
    print(f"h5grove serving {root} on http://127.0.0.1:{port}/", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.root, args.port))


if __name__ == "__main__":
    main()
