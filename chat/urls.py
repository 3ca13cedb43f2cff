from django.urls import path

from chat import apis

urlpatterns = [
    path("sessions", apis.SessionCreateApi.as_view(), name="session-create"),
    path("sessions/<str:session_id>", apis.SessionDetailApi.as_view(), name="session-detail"),
    path("sessions/<str:session_id>/stream-token", apis.StreamTokenApi.as_view(), name="stream-token"),
    path("sessions/<str:session_id>/fallback", apis.FallbackCreateApi.as_view(), name="fallback-create"),
]
