"""What every Keyway service process needs: resources, health endpoints, broker link, serving."""

from .broker import BrokerLink
from .consumers import CONSUMERS, Consumers, Subscription, add_readiness_routes, consumers_context
from .health import ReadinessCheck, add_health_routes, mongo_check
from .resources import BROKER, CIPHER, MONGO_CLIENT, MONGO_DB, broker_context, build_cipher, mongo_context
from .runner import serve

__all__ = [
    "BROKER",
    "CIPHER",
    "CONSUMERS",
    "MONGO_CLIENT",
    "MONGO_DB",
    "BrokerLink",
    "Consumers",
    "ReadinessCheck",
    "Subscription",
    "add_health_routes",
    "add_readiness_routes",
    "broker_context",
    "build_cipher",
    "consumers_context",
    "mongo_check",
    "mongo_context",
    "serve",
]
