"""The console's routers, one module per resource: each has `pages` (HTML and forms) and `api` (JSON) routers."""

from gateway.console.routes import (activity, alarms, audit, customers, devices, export, handling, holds, images, session,
                                   users)

# Routes are matched, and listed in /api/openapi.json, in this order.
RESOURCES = (session, alarms, images, handling, holds, export, devices, activity, audit, customers, users)
