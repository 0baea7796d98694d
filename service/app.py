"""The application factory: migrate and open the archive at start-up, mount the routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import health
from service.analysis.wiring import start_analysis_services
from service.api import routers as api_routers
from service.auth.login_throttle import LoginThrottle
from service.auth.token_lookup import TokenLookup
from service.cors import MachineRoutesCors
from service.dicom.endpoints import routers as dicomweb_routers
from service.direct_routes import DirectRoutes
from service.error_handlers import install_error_handlers
from service.log_config import configure_logging, get_logger
from service.loop_database import open_loop_database
from service.middleware import RequestContextMiddleware
from service.query_check import refuse_unknown_query_parameters
from service.review.pages import create_pages_app
from service.review.rendering import BASE as REVIEW_PAGES
from service.review.view_files import ReviewViews
from service.runtime import open_runtime
from service.settings import Settings, get_settings

log = get_logger(__name__)
# Incoming files older than this at start-up were left by a crash: no upload idles this long.
STALE_INCOMING_S = 3600.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """Return the Vigil application for these settings (the environment's by default)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = open_runtime(settings)
        if swept := runtime.archive.sweep_incoming(STALE_INCOMING_S):
            log.info("archive.incoming_swept", files=swept)
        analysis = start_analysis_services(runtime)
        app.state.settings = settings
        app.state.runtime = runtime
        app.state.session_factory = runtime.session_factory
        app.state.archive = runtime.archive
        app.state.analysis = analysis
        app.state.review_views = ReviewViews(settings.results_path)
        app.state.login_throttle = LoginThrottle()
        app.state.loop_database = loop_database = open_loop_database(
            settings.database_url, durable_read_log=settings.durable_read_log
        )
        app.state.token_lookup = TokenLookup(settings.database_url, loop_database)
        log.info("app.started", environment=settings.environment.value)
        try:
            yield
        finally:
            await app.state.token_lookup.close()
            if loop_database is not None:
                loop_database.close()
            app.state.review_views.close()
            analysis.close()
            runtime.close()

    app = FastAPI(
        title="Vigil",
        version="0.1.0",
        summary="Decision support for medical images. The AI assists; the clinician decides.",
        lifespan=lifespan,
    )
    # Inside the request context; the DICOMweb routers are the app's first under /dicomweb.
    app.add_middleware(DirectRoutes, routers=[("/dicomweb", r) for r in dicomweb_routers])
    if settings.cors_origins:
        app.add_middleware(MachineRoutesCors, origins=settings.cors_origins)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    for router in dicomweb_routers:
        app.include_router(router, prefix="/dicomweb")
    app.include_router(health.router)
    for router in api_routers:
        app.include_router(
            router, prefix="/api/v1", dependencies=[Depends(refuse_unknown_query_parameters)]
        )
    # The review pages: their own app (cookie logins, HTML errors), outside the API schema.
    app.mount(REVIEW_PAGES, create_pages_app(app.state))
    return app
