from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("esi/", include("esi_views.urls")),  # callback, login, logout, characters page
    path("", include("demo.urls")),
]
