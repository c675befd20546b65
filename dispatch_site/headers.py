"""Security headers Django does not set itself (docs/security.md, Headers).

``Content-Security-Policy`` comes from django-csp with ``CONTENT_SECURITY_POLICY``; this
middleware adds the WebSocket origin of the requested host to ``connect-src`` (browsers
differ on whether ``'self'`` covers ws:/wss:) and sets ``Permissions-Policy``.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost


class SecurityHeadersMiddleware(CSPMiddleware):
    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts  # a 400 for the host; 'self' is all connect-src needs there
        socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{host}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), socket_origin]
        parts.update = update
        return parts

    def process_response(self, request, response):
        response = super().process_response(request, response)
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        return response
