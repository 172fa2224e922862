"""`python -m service`: serve with uvicorn on SEQREC_HOST:SEQREC_PORT (see docs/service.md)."""

from __future__ import annotations

import uvicorn

from service.main import create_app
from service.settings import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)


if __name__ == "__main__":
    main()
