"""Sign a request as Twilio signs its webhooks, to try ours by hand (see api/README.md).

    python -m api.sign_webhook /v1/twilio/inbound From=+15555550123 Body=OK

prints the ``X-Twilio-Signature`` for ``AFTERCARE_PUBLIC_BASE_URL`` + path and those fields,
with the auth token the service checks against.
"""

from __future__ import annotations

import argparse

from aftercare.settings import get_settings
from api.sms_webhooks import twilio_signature


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api.sign_webhook",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("path", help="path and query, e.g. /v1/twilio/inbound")
    parser.add_argument("fields", nargs="*", metavar="NAME=VALUE", help="the form fields")
    args = parser.parse_args(argv)
    fields = dict(field.split("=", 1) for field in args.fields)
    print(twilio_signature(get_settings(), args.path, fields))


if __name__ == "__main__":
    main()
