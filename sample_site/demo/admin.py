"""Nothing of the demo's own: the admin shows esi_views' tokens, scopes and characters."""
