from django.urls import path

from metrics.views import metrics_page

app_name = "metrics"
urlpatterns = [
    path("metrics/", metrics_page, name="page"),
]
