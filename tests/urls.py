from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("esi/", include("esi_views.urls")),
    path("v/", include("tests.views_app")),
    path("api/", include("tests.drf.api")),
]
