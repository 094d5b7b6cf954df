from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import api, views

app_name = "demo"

urlpatterns = [
    path("", views.home, name="home"),
    path("character/", views.CharacterView.as_view(), name="character"),
    path("character/decorated/", views.character_decorated, name="character-decorated"),
    path("characters/", views.CharactersView.as_view(), name="characters"),
    path("single-use/", views.SingleUseView.as_view(), name="single-use"),
    path("api-demo/", views.api_page, name="api-page"),
    path("api-demo/bearer/", views.api_bearer, name="api-bearer"),
    path("api-demo/token/", views.api_token, name="api-token"),  # demo only
    path("tasks/", views.tasks_page, name="tasks"),
    path("tasks/start/", views.tasks_start, name="tasks-start"),
    path("tasks/<str:batch>/status/", views.tasks_status, name="tasks-status"),
    path("api/me/", api.MeView.as_view(), name="api-me"),
    path("api/wallet/", api.WalletView.as_view(), name="api-wallet"),
    path("api/characters/", api.CharactersView.as_view(), name="api-characters"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="demo:api-schema"), name="api-docs"),
]
