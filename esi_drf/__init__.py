"""Django REST framework integration for esi_views: permissions, bearer auth, OpenAPI."""
