"""The HTTP API: FastAPI routers and pydantic models, one module per resource.

``app.py`` builds the app: ``create_app`` (operations, events, customers, reports),
``add_case_routes`` (cases, SLA, alerts, webhooks, the service report) and
``add_privacy_routes`` (erasure, export, audit, identity). To add a resource:

1. a module here with ``router = APIRouter(tags=["..."],
   dependencies=[Depends(only_known_params)])`` (``paging.py``: unknown query parameters
   are a 400), its request and answer models, and routes that take
   ``Depends(role("<right>"))`` (``auth.py``), read their services with ``ctx(request)``
   (``context.py``; add a field to ``ApiContext`` for a new one), raise ``ApiError`` and
   declare what they can answer: ``response_model=...`` and
   ``responses=responses(*V1, 404, ...)`` (``errors.py``);
2. ``app.include_router(module.router)`` in the ``create_app``/``add_*`` function whose
   services it needs (or a function of its own, called from ``runner.build_api``).

tests/unit/test_api_models.py checks the document; tests/e2e/test_openapi_conformance.py
runs schemathesis against a running ``up``.
"""
