from django.urls import path

from chat.apis import MessageCancelApi
from streaming import views

urlpatterns = [
    path("messages/<str:message_id>", views.message_detail, name="message-detail"),
    path("messages/<str:message_id>/stream", views.message_stream, name="message-stream"),
    path("messages/<str:message_id>/cancel", MessageCancelApi.as_view(), name="message-cancel"),
    path("stream", views.stream_start, name="stream-start"),
]
