from django.urls import path

from . import views

app_name = "esi_views"

urlpatterns = [
    path("callback/", views.callback, name="callback"),
    path("select/", views.select, name="select"),
    path("login/", views.login, name="login"),
]
