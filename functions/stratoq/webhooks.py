"""Receiving stratoq webhooks: `verify(secret, headers, body)` checks a delivery's
signature and replay window and returns its event (docs/webhooks.md).

Standard library only, so a receiver imports it without the rest of stratoq's weight.
"""

from stratoq.core.events import EVENT_ID_HEADER, SIGNATURE_HEADER, SignatureError, sign, verify

__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "SignatureError", "sign", "verify"]
