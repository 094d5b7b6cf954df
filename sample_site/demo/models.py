"""The demo keeps no models: accounts and characters are esi_views' own
(``esi_views.models.CharacterOwnership``). Migration 0002 drops the demo's former
login table."""
