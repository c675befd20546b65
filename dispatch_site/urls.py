from django.contrib import admin
from django.urls import include, path

from chat.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("chat.accounts")),
    path("", include("chat.urls")),
    path("", include("metrics.urls")),
    path("", api.urls),
]
