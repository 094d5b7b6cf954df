from django.urls import path

from . import account_views, views

app_name = "esi_views"

urlpatterns = [
    path("callback/", views.callback, name="callback"),
    path("select/", views.select, name="select"),
    path("login/", views.login, name="login"),
    path("logout/", account_views.LogoutView.as_view(), name="logout"),
    path("characters/", account_views.CharactersView.as_view(), name="characters"),
]
