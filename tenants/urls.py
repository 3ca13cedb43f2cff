from django.urls import path

from tenants import apis

urlpatterns = [
    path("widget/config", apis.WidgetConfigApi.as_view(), name="widget-config"),
    path("agent/key", apis.ServerKeyApi.as_view(), name="agent-key"),
]
