"""The web app's pages (docs/protocol.md#8-web-app-socket); its live parts travel over the ``ws/ui`` socket."""

from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("new", views.new_chat, name="new"),
    path("c/<str:conversation_id>", views.conversation_page, name="conversation"),
    path("c/<str:conversation_id>/turns", views.conversation_turns, name="turns"),
    path("ui/conversations", views.conversation_search, name="search"),
]
