"""Brook's URLs: the demo page, health, metrics, the admin and its dashboard, the v1 API and its OpenAPI description.

See docs/api.md.
"""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from streaming.ops import pages
from streaming.ops.dashboard import dashboard_view
from streaming.ops.prometheus import metrics_view

urlpatterns = [
    path("", pages.demo_page, name="demo"),
    path("healthz", pages.healthz, name="healthz"),
    path("readyz", pages.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/dashboard/", dashboard_view, name="brook-dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tenants.urls")),
    path("api/v1/", include("chat.urls")),
    path("api/v1/", include("streaming.transports.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

handler400 = "core.errors.bad_request"
handler404 = "core.errors.not_found"
handler500 = "core.errors.server_error"
