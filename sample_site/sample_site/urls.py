from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("esi/", include("esi_views.urls")),  # the SSO callback: /esi/callback/
    path("", include("demo.urls")),
]
