"""What every Keyway service process needs: resources, health endpoints, broker link, serving."""

from .broker import BrokerLink
from .health import ReadinessCheck, add_health_routes, mongo_check
from .resources import BROKER, CIPHER, MONGO_CLIENT, MONGO_DB, broker_context, build_cipher, mongo_context
from .runner import serve

__all__ = [
    "BROKER",
    "CIPHER",
    "MONGO_CLIENT",
    "MONGO_DB",
    "BrokerLink",
    "ReadinessCheck",
    "add_health_routes",
    "broker_context",
    "build_cipher",
    "mongo_check",
    "mongo_context",
    "serve",
]
