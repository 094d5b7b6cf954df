app_name = "esi_views"

# The SSO callback ("callback") and token selection views arrive with the views issue.
urlpatterns: list = []
